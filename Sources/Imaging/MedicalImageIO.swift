import Core
import Foundation
import MedicalFormats

// MARK: - Medical files as Images
//
// The bridge between module MedicalFormats (DICOM, NIfTI) and `Image`. One entry point,
// `readImages(at:options:)`, reads anything medsynth accepts as input and returns 2-D images:
//   - DICOM Part 10 ("DICM" at offset 128): one image per frame, windowed per `options.window`;
//     JPEG Baseline frames are decoded with libjpeg (`decodeJPEG`);
//   - NIfTI-1 (.nii, .nii.gz, or the "n+1" magic): slices along `options.axis`;
//   - anything else: PNG or JPEG through `decodeImage` (one image).
//
// Dataset folders of DICOM files: for each regular file, `isDICOMFile(at:)` says whether it is
// DICOM; count and skip the others, and call `readImages(at:options:)` on the rest (each file may
// give several images: multi-frame files, volumes). All errors are `MedSynthError`s naming the file.

/// Which reader a file goes to.
public enum MedicalFileKind: Equatable, Sendable {
    case dicom, nifti, image
}

/// Classifies a file from its first bytes and name: "DICM" at offset 128 → DICOM; a name ending in
/// .nii or .nii.gz, or the NIfTI-1 "n+1" magic at offset 344 → NIfTI; otherwise PNG/JPEG.
public func medicalFileKind(bytes: [UInt8], name: String) -> MedicalFileKind {
    if DICOMFile.hasPart10Signature(bytes) { return .dicom }
    let lower = name.lowercased()
    if lower.hasSuffix(".nii") || lower.hasSuffix(".nii.gz") { return .nifti }
    if bytes.count >= 348 && bytes[344] == 0x6E && bytes[345] == 0x2B && bytes[346] == 0x31 && bytes[347] == 0 { return .nifti }
    return .image
}

/// True when the file has "DICM" at offset 128 (reads only the first 132 bytes; false when unreadable).
public func isDICOMFile(at url: URL) -> Bool {
    guard let handle = try? FileHandle(forReadingFrom: url) else { return false }
    defer { try? handle.close() }
    guard let head = try? handle.read(upToCount: 132) else { return false }
    return DICOMFile.hasPart10Signature([UInt8](head))
}

/// Reads a DICOM, NIfTI, PNG or JPEG file as 2-D images (see the notes at the top of this file).
/// - Parameter options: window, output bit depth (nil: 8 for 8-bit data, else 16), and for NIfTI
///   the axis, slice selection and volume. PNG/JPEG files ignore them and keep their own depth.
public func readImages(at url: URL, options: MedicalReadOptions = .init()) throws -> [Image] {
    try decodeImages(readFileBytes(at: url), name: url.path, options: options)
}

/// `readImages` on bytes already in memory; `name` is used for the format choice and in errors.
public func decodeImages(_ bytes: [UInt8], name: String, options: MedicalReadOptions = .init()) throws -> [Image] {
    try decodeImagesWithValues(bytes, name: name, options: options).images
}

/// `decodeImages`, also returning how the samples map to the file's stored and modality values
/// when `options.window` is `.stored` (nil for other windows): what `export` needs to write
/// exact values with the modality rescale.
public func decodeImagesWithValues(_ bytes: [UInt8], name: String,
                                   options: MedicalReadOptions = .init()) throws -> (images: [Image], values: StoredValueMapping?) {
    let opened = try openImages(bytes, name: name, options: options)
    return (try opened.collect(), opened.values)
}

/// The images of one file, settled but not necessarily made yet: NIfTI slices are made one batch
/// at a time while `forEach` runs (a volume at the pixel limit is 512 MB of int16 voxels, and
/// gigabytes as images), native DICOM frames one at a time; PNG/JPEG images are decoded already.
public struct MedicalImages {
    enum Source {
        case decoded([Image])
        case nifti(NIfTIVolume, NIfTIVolume.SlicePlan)
        case dicom(DICOMFrames)
    }
    let source: Source
    /// How samples map to stored and modality values (`--window stored` only; see `decodeImagesWithValues`).
    public let values: StoredValueMapping?

    /// Number of images `forEach` gives.
    public var count: Int {
        switch source {
        case .decoded(let images): return images.count
        case .nifti(_, let plan): return plan.count
        case .dicom(let frames): return frames.count
        }
    }

    /// Calls `body` with each image in order.
    public func forEach(_ body: (Image) throws -> Void) throws {
        switch source {
        case .decoded(let images): for image in images { try body(image) }
        case .nifti(let volume, let plan): try volume.forEachSlice(plan, body)
        case .dicom(let frames): try frames.forEach(body)
        }
    }

    /// Image `index` alone (what `forEach` gives at that position), made on demand: a slice of a
    /// large volume is read back from the file (or its inflated copy), not kept.
    public func image(at index: Int) throws -> Image {
        switch source {
        case .decoded(let images):
            guard images.indices.contains(index) else { throw MedSynthError("image \(index) does not exist (the file gives \(images.count))") }
            return images[index]
        case .nifti(let volume, let plan): return try volume.image(plan, at: index)
        case .dicom(let frames): return try frames.image(at: index)
        }
    }

    /// The parsed file of DICOM input (so callers need not parse, and inflate, it again).
    public var dicomFile: DICOMFile? {
        if case .dicom(let frames) = source { return frames.file }
        return nil
    }

    /// All images at once.
    public func collect() throws -> [Image] {
        if case .decoded(let images) = source { return images }
        var out: [Image] = []
        out.reserveCapacity(count)
        try forEach { out.append($0) }
        return out
    }
}

/// Opens a DICOM, NIfTI, PNG or JPEG file held in memory (see `readImages`); `name` is used for the
/// format choice and in errors. Every check that can fail on the header is made here.
public func openImages(_ bytes: [UInt8], name: String, options: MedicalReadOptions = .init()) throws -> MedicalImages {
    let stored = options.window == .stored
    switch medicalFileKind(bytes: bytes, name: name) {
    case .dicom:
        let file = try DICOMFile(bytes: bytes, path: name, maxInflatedBytes: options.maxDecompressedBytes,
                                 maxPixels: options.maxPixels, maxImagePixels: options.maxImagePixels)
        let frames = try openDICOMFrames(file, window: options.window, bitDepth: options.bitDepth,
                                         decodeJPEG: jpegFrameDecoder(name: name),
                                         maxPixels: options.maxPixels, maxImagePixels: options.maxImagePixels)
        return MedicalImages(source: .dicom(frames), values: stored ? StoredValueMapping(storedSamplesOf: frames.encoding) : nil)
    case .nifti:
        let volume = try NIfTIVolume(bytes: bytes, path: name, maxDecompressedBytes: options.maxDecompressedBytes,
                                     maxPixels: options.maxPixels, maxImagePixels: options.maxImagePixels)
        return MedicalImages(source: .nifti(volume, try volume.plan(options)),
                             values: stored ? StoredValueMapping(storedSamplesOf: volume.encoding) : nil)
    case .image:
        return MedicalImages(source: .decoded([try decodeImage(bytes, name: name, maxPixels: options.maxImagePixels)]),
                             values: stored ? .identity : nil)
    }
}

/// JPEG Baseline frames of a DICOM file through libjpeg; samples become stored values.
func jpegFrameDecoder(name: String) -> JPEGFrameDecoder {
    { stream, index, maxPixels in
        let image = try decodeJPEG(stream, name: "\(name) (frame \(index))", maxSide: 65535, maxPixels: maxPixels)
        return ScalarFrame(width: image.width, height: image.height, channels: image.channels,
                           values: image.samples.map(Float.init))
    }
}

// MARK: - Writing

/// Writes an image as a DICOM Secondary Capture file (Explicit VR Little Endian, new UIDs).
/// Patient/study fields of `options.source` are copied only with `options.keepIdentifiers`.
/// Alpha is dropped; 8- and 16-bit depths are kept.
public func writeDICOM(_ image: Image, to url: URL, options: DICOMWriteOptions = .init()) throws {
    try writeDICOMSecondaryCapture(image.hasAlpha ? image.converted(channels: image.colorChannels) : image, to: url, options: options)
}

/// Writes equal-sized images as one NIfTI-1 volume (uint8 or uint16; ".gz" compresses), slice k
/// being image k; reading it back along the axial axis returns the same images. Colour images
/// are converted to gray (BT.601 luma); alpha is dropped.
/// `values`: for images read with `--window stored`, how samples map back to stored and modality
/// values (see `NIfTIStackWriter`).
public func writeNIfTI(_ images: [Image], values: StoredValueMapping? = nil, to url: URL) throws {
    let writer = try NIfTIStackWriter(url: url, values: values)
    for image in images { try appendNIfTISlice(image, to: writer) }
    try writer.finish()
}

/// One image into a NIfTI stack: colour becomes gray (BT.601 luma), alpha is dropped.
private func appendNIfTISlice(_ image: Image, to writer: NIfTIStackWriter) throws {
    try writer.append(image.colorChannels == 1 && !image.hasAlpha ? image : image.converted(channels: 1))
}

private func describe(_ m: StoredValueMapping) -> String {
    "stored = sample \(m.storedMinimum < 0 ? "- \(-m.storedMinimum)" : "+ \(m.storedMinimum)"), value = stored x \(m.slope) + \(m.intercept)"
}

// MARK: - Export

/// Output of `exportMedical`.
public enum MedicalExportFormat: String, CaseIterable, Sendable {
    /// One Secondary Capture file per image in an output folder.
    case dicom
    /// One NIfTI-1 volume holding every image as a slice.
    case nifti
}

/// What `exportMedical` wrote.
public struct MedicalExportReport: Sendable {
    public var written: [URL] = []
    public var images = 0

    public var description: String {
        "wrote \(images) image(s) to \(written.count) file(s)" + (written.count == 1 ? ": \(written[0].path)" : "")
    }
}

/// Converts image, DICOM or NIfTI files to DICOM Secondary Capture (`output` is a folder, files
/// named `<input stem>_<image index>.dcm`, all in one new series) or to one NIfTI stack (`output`
/// is a .nii or .nii.gz file). DICOM inputs are the identifier source when `keepIdentifiers` is set.
/// - Parameter uidSeed: seed for reproducible UIDs; nil makes globally unique ones.
public func exportMedical(inputs: [URL], to output: URL, format: MedicalExportFormat,
                          readOptions: MedicalReadOptions = .init(), keepIdentifiers: Bool = false,
                          uidSeed: UInt64? = nil,
                          progress: (_ done: Int, _ total: Int) -> Void = { _, _ in }) throws -> MedicalExportReport {
    guard !inputs.isEmpty else { throw MedSynthError("export: no input files") }
    var report = MedicalExportReport()
    switch format {
    case .nifti:
        let name = output.lastPathComponent.lowercased()
        guard name.hasSuffix(".nii") || name.hasSuffix(".nii.gz") else {
            throw MedSynthError(file: output.path, "NIfTI output must end in .nii or .nii.gz")
        }
        // Slices go to the file as they are made: memory holds a batch of slices, not the volume.
        var writer: NIfTIStackWriter? = nil
        var values: StoredValueMapping? = nil
        for (index, input) in inputs.enumerated() {
            let opened = try openImages(readFileBytes(at: input), name: input.path, options: readOptions)
            // One volume has one scl_slope/scl_inter: stored values of inputs with different
            // rescales (or signedness) cannot share it.
            if let mapping = opened.values, let earlier = values, mapping != earlier {
                throw MedSynthError(file: input.path, "--window stored: stored values map to modality values as \(describe(mapping)), earlier inputs as \(describe(earlier)); one NIfTI volume cannot hold both (use a window, or export them separately)")
            }
            values = opened.values ?? values
            if writer == nil && opened.count > 0 { writer = try NIfTIStackWriter(url: output, values: values) }
            if let writer { try opened.forEach { try appendNIfTISlice($0, to: writer) } }
            progress(index + 1, inputs.count)
        }
        guard let writer else { throw MedSynthError(file: output.path, "no images to write") }
        try writer.finish()
        report.written = [output]
        report.images = writer.count
    case .dicom:
        var stream: RandomStream? = uidSeed.map { RandomStream(seed: $0) }
        let series = DICOMUIDs.make(stream: &stream)
        let study = DICOMUIDs.make(stream: &stream)
        var instance = 0
        for (fileIndex, input) in inputs.enumerated() {
            let images = try openImages(readFileBytes(at: input), name: input.path, options: readOptions)
            // The file already parsed (a deflated one inflated) for its frames.
            let source = keepIdentifiers ? images.dicomFile : nil
            let values = images.values
            // Made only once there is something to write, so a bad first input leaves no folder.
            try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
            let stem = input.lastPathComponent.split(separator: ".").first.map(String.init) ?? "image"
            var index = -1
            try images.forEach { image in
                index += 1
                instance += 1
                var options = DICOMWriteOptions(source: source, keepIdentifiers: keepIdentifiers, seriesInstanceUID: series,
                                                studyInstanceUID: study, instanceNumber: instance,
                                                seriesDescription: "medsynth export",
                                                uidStream: stream?.split(UInt64(fileIndex) << 32 | UInt64(index)))
                options.storedValues = values
                let number = String(index), padded = String(repeating: "0", count: max(0, 4 - number.count)) + number
                let url = output.appendingPathComponent("\(stem)_\(padded).dcm")
                try writeDICOM(image, to: url, options: options)
                report.written.append(url)
                report.images += 1
            }
            progress(fileIndex + 1, inputs.count)
        }
    }
    return report
}
