#!/usr/bin/env python3
"""Makes the independent DICOM and NIfTI fixtures for Tests/MedicalFormatsTests.

Files are written with pydicom 3 and nibabel 5 (not with medsynth's own writer), and the values
a correct reader must return are computed with pydicom/nibabel/Pillow and stored in
Fixtures/expected.json, so the Swift tests never need Python.

    pip install pydicom nibabel pillow numpy
    python3 scripts/make_medical_fixtures.py

Pixel patterns are small deterministic formulas; everything is a few hundred bytes.
"""
import io
import json
import os

import nibabel as nib
import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (JPEG2000, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                         JPEGBaseline8Bit, generate_uid)

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "MedicalFormatsTests", "Fixtures")
SC = "1.2.840.10008.5.1.4.1.1.7"
CT = "1.2.840.10008.5.1.4.1.1.2"
expected = {}


def base_dataset(ts, sop_class=CT):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6.7"
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = "1.2.3.4"
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = "1.2.3.4.5.6.7"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "ID-0042"
    ds.StudyInstanceUID = "1.2.3.4.5.6.8"
    ds.SeriesInstanceUID = "1.2.3.4.5.6.9"
    ds.Modality = "CT"
    return ds


def undefined_lengths(ds):
    """Marks every sequence and item (recursively) for undefined-length encoding with delimiters."""
    for elem in ds:
        if elem.VR == "SQ":
            elem.is_undefined_length = True
            for item in elem.value:
                item.is_undefined_length_sequence_item = True
                undefined_lengths(item)


def save(ds, name, **kw):
    ds.save_as(os.path.join(OUT, name), enforce_file_format=True, **kw)
    back = pydicom.dcmread(os.path.join(OUT, name))
    return back


def ct_explicit_le():
    # 5x3 unsigned 12-bit CT, rescale intercept -1024, window 40/400, plus a sequence with
    # undefined lengths and private tags the reader must skip.
    rows, cols = 3, 5
    y, x = np.mgrid[0:rows, 0:cols]
    stored = ((x * 211 + y * 503 + 700) % 4096).astype(np.uint16)
    ds = base_dataset(ExplicitVRLittleEndian)
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    item = Dataset()
    item.CodeValue = "T-D3000"
    item.CodeMeaning = "Chest"
    nested = Dataset()
    nested.CodeValue = "X"
    item.ConceptNameCodeSequence = Sequence([nested])
    ds.AnatomicRegionSequence = Sequence([item, item])
    undefined_lengths(ds)
    block = ds.private_block(0x0009, "MEDSYNTH TEST", create=True)
    block.add_new(0x01, "LO", "private value")
    block.add_new(0x02, "OB", b"\x01\x02\x03\x04")
    ds.PixelData = stored.tobytes()
    back = save(ds, "ct_explicit_le.dcm")
    assert np.array_equal(back.pixel_array, stored)
    # The same data set as Deflated Explicit VR Little Endian (PS3.5 §A.5).
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    back = save(ds, "ct_deflated.dcm")
    assert np.array_equal(back.pixel_array, stored)
    expected["ct_explicit_le.dcm"] = {"rows": rows, "cols": cols, "stored": stored.flatten().tolist(),
                                      "slope": 1.0, "intercept": -1024.0, "center": 40.0, "width": 400.0}


def mr_implicit_le():
    rows, cols = 4, 3
    y, x = np.mgrid[0:rows, 0:cols]
    stored = (x * 1000 - y * 3000 + 17).astype(np.int16)
    ds = base_dataset(ImplicitVRLittleEndian)
    ds.Modality = "MR"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept = "10"
    ds.RescaleSlope = "2.5"
    item = Dataset()
    item.CodeValue = "123"
    ds.ProcedureCodeSequence = Sequence([item])
    undefined_lengths(ds)
    ds.PixelData = stored.tobytes()
    back = save(ds, "mr_implicit_le.dcm")
    assert np.array_equal(back.pixel_array, stored)
    expected["mr_implicit_le.dcm"] = {"rows": rows, "cols": cols, "stored": stored.flatten().tolist(),
                                      "slope": 2.5, "intercept": 10.0}


def explicit_be():
    rows, cols = 2, 4
    y, x = np.mgrid[0:rows, 0:cols]
    stored = (x * 4000 + y * 20000 + 258).astype(np.uint16)
    ds = base_dataset(ExplicitVRBigEndian)
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    item = Dataset()
    item.CodeValue = "be"
    ds.AnatomicRegionSequence = Sequence([item])
    undefined_lengths(ds)
    # pydicom writes OW bytes as given, so they must already be big endian.
    ds.PixelData = stored.astype(">u2").tobytes()
    back = save(ds, "explicit_be.dcm")
    assert np.array_equal(back.pixel_array, stored)
    expected["explicit_be.dcm"] = {"rows": rows, "cols": cols, "stored": stored.flatten().tolist()}


def rgb_planar_multiframe():
    frames, rows, cols = 2, 2, 3
    f, y, x = np.mgrid[0:frames, 0:rows, 0:cols]
    rgb = np.stack([(x * 80 + f * 7) % 256, (y * 120 + 5) % 256, (x * 30 + y * 60 + f * 90) % 256], axis=-1).astype(np.uint8)
    ds = base_dataset(ExplicitVRLittleEndian, SC)
    ds.Modality = "OT"
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, frames
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.ascontiguousarray(rgb.transpose(0, 3, 1, 2)).tobytes()  # RR..GG..BB.. per frame
    back = save(ds, "rgb_planar1_2frames.dcm")
    assert np.array_equal(back.pixel_array, rgb)
    expected["rgb_planar1_2frames.dcm"] = {"rows": rows, "cols": cols, "frames": frames, "rgb": rgb.flatten().tolist()}


def mono1_multiframe():
    frames, rows, cols = 3, 2, 2
    stored = (np.arange(frames * rows * cols).reshape(frames, rows, cols) * 20).astype(np.uint8)
    ds = base_dataset(ExplicitVRLittleEndian, SC)
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, frames
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = stored.tobytes()
    back = save(ds, "mono1_3frames.dcm")
    assert np.array_equal(back.pixel_array, stored)
    expected["mono1_3frames.dcm"] = {"rows": rows, "cols": cols, "frames": frames, "stored": stored.flatten().tolist()}


def jpeg_baseline():
    frames, rows, cols = 2, 16, 16
    y, x = np.mgrid[0:rows, 0:cols]
    streams, decoded = [], []
    for f in range(frames):
        gray = np.clip(x * 12 + y * 3 + f * 40, 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(gray, "L").save(buf, "JPEG", quality=95)
        streams.append(buf.getvalue())
        decoded.append(np.asarray(Image.open(io.BytesIO(buf.getvalue()))))
    ds = base_dataset(JPEGBaseline8Bit, SC)
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, frames
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate(streams, has_bot=True)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    save(ds, "jpeg_baseline_2frames.dcm")
    expected["jpeg_baseline_2frames.dcm"] = {"rows": rows, "cols": cols, "frames": frames,
                                             "decoded": np.stack(decoded).flatten().tolist()}


def jpeg2000_unsupported():
    ds = base_dataset(JPEG2000, SC)
    ds.Rows, ds.Columns = 2, 2
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 12])  # not a real codestream
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    save(ds, "jpeg2000.dcm")


def canonical_slices(img):
    """Slices of nibabel's closest-canonical (RAS+) image, in the reader's documented display
    orientation: np.flipud(plane.T) with the plane taken at each index."""
    canon = nib.as_closest_canonical(img)
    data = canon.get_fdata(dtype=np.float64)  # applies scl_slope/scl_inter
    if data.ndim == 3:
        data = data[..., None]
    out = {}
    for name, axis in (("sagittal", 0), ("coronal", 1), ("axial", 2)):
        slices = []
        for t in range(data.shape[3]):
            for k in range(data.shape[axis]):
                plane = np.take(data[..., t], k, axis=axis)
                slices.append(np.flipud(plane.T).flatten().tolist())
        out[name] = slices
    return out


def nifti_files():
    # int16 with scaling and a flipped/scaled affine (LAS-like), gzipped.
    i, j, k = np.mgrid[0:5, 0:4, 0:3]
    data = (i * 100 + j * 10 + k - 50).astype(np.int16)
    affine = np.diag([-2.0, 2.0, 3.0, 1.0])
    img = nib.Nifti1Image(data, affine)
    img.header.set_data_dtype(np.int16)
    img.header.set_slope_inter(0.5, -10.0)
    nib.save(img, os.path.join(OUT, "int16_las_scaled.nii.gz"))
    back = nib.load(os.path.join(OUT, "int16_las_scaled.nii.gz"))
    expected["int16_las_scaled.nii.gz"] = canonical_slices(back)

    # Big-endian float32, 4-D, identity orientation.
    vol = (np.arange(4 * 3 * 2 * 2, dtype=np.float32).reshape(4, 3, 2, 2, order="F") * 1.25 - 3.0)
    img = nib.Nifti1Image(vol, np.eye(4))
    img.header.set_data_dtype(np.float32)
    big = nib.Nifti1Image(vol, np.eye(4), header=img.header.as_byteswapped(">"))
    nib.save(big, os.path.join(OUT, "float32_be_4d.nii"))
    back = nib.load(os.path.join(OUT, "float32_be_4d.nii"))
    assert back.header.endianness == ">"
    expected["float32_be_4d.nii"] = canonical_slices(back)

    # uint8 with permuted axes: voxel i runs posterior→anterior... via sform only (qform 0).
    data = (np.arange(3 * 4 * 2).reshape(3, 4, 2, order="F") * 9 % 256).astype(np.uint8)
    affine = np.array([[0, 0, -1.5, 10], [1, 0, 0, -5], [0, -2, 0, 7], [0, 0, 0, 1]], dtype=float)
    img = nib.Nifti1Image(data, affine)
    img.set_qform(None, code=0)
    img.set_sform(affine, code=2)
    nib.save(img, os.path.join(OUT, "uint8_permuted.nii"))
    back = nib.load(os.path.join(OUT, "uint8_permuted.nii"))
    expected["uint8_permuted.nii"] = canonical_slices(back)

    # qform only (sform code 0): a 90° rotation about z as a quaternion.
    data = (np.arange(3 * 2 * 2).reshape(3, 2, 2, order="F") + 1).astype(np.uint8)
    affine = np.array([[0, -1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)
    img = nib.Nifti1Image(data, None)
    img.set_qform(affine, code=1)
    img.set_sform(None, code=0)
    nib.save(img, os.path.join(OUT, "uint8_qform_rot90.nii"))
    back = nib.load(os.path.join(OUT, "uint8_qform_rot90.nii"))
    assert back.header["sform_code"] == 0 and back.header["qform_code"] == 1
    expected["uint8_qform_rot90.nii"] = canonical_slices(back)


def main():
    os.makedirs(OUT, exist_ok=True)
    ct_explicit_le()
    mr_implicit_le()
    explicit_be()
    rgb_planar_multiframe()
    mono1_multiframe()
    jpeg_baseline()
    jpeg2000_unsupported()
    nifti_files()
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, separators=(",", ":"))
    with open(os.path.join(OUT, "README.txt"), "w") as f:
        f.write("Made by scripts/make_medical_fixtures.py with pydicom %s, nibabel %s, Pillow %s.\n"
                "expected.json holds the values pydicom/nibabel/Pillow read back (NIfTI: canonical RAS+\n"
                "slices as np.flipud(plane.T), scaled). All data are synthetic formulas, no patient data.\n"
                % (pydicom.__version__, nib.__version__, Image.__version__))


if __name__ == "__main__":
    main()
