import Core
import Foundation

// MARK: - NIfTI-1 reading
//
// Header layout from nifti1.h (NIfTI DFWG, 2004): 348 bytes, sizeof_hdr = 348 at offset 0 tells
// the byte order, magic "n+1\0" at 344 for single .nii files, voxels at vox_offset. Voxel (i,j,k,t)
// lives at element i + nx·(j + ny·(k + nz·t)).
//
// Orientation: the voxel-to-world matrix comes from the sform (sform_code > 0), else the qform
// quaternion (qform_code > 0, nifti1.h "METHOD 2"), else the identity. Each voxel axis is assigned
// to the world axis it is most parallel to (as nibabel's `io_orientation`), and the volume is read
// as if reoriented to RAS+ (+x toward the patient's right, +y anterior, +z superior).
// Slices are then shown in the neurological convention (nibabel/FSLeyes default):
//   axial    (fixed S): columns run left→right along +R, rows top→bottom go from anterior to posterior;
//   coronal  (fixed A): columns along +R, rows from superior to inferior;
//   sagittal (fixed R): columns along +A (anterior on the right), rows from superior to inferior.
// That is `np.flipud(canonical[:, :, k].T)` for axial in nibabel terms.

/// NIfTI-1 voxel data types this reader handles (nifti1.h DT_* codes).
public enum NIfTIDataType: Int16, Sendable {
    case uint8 = 2, int16 = 4, int32 = 8, float32 = 16, float64 = 64, int8 = 256, uint16 = 512, uint32 = 768

    public var bytes: Int {
        switch self {
        case .uint8, .int8: return 1
        case .int16, .uint16: return 2
        case .int32, .uint32, .float32: return 4
        case .float64: return 8
        }
    }

    /// Integer range for types of at most 16 bits (the exact `stored` path).
    var storedRange: ClosedRange<Int>? {
        switch self {
        case .uint8: return 0...255
        case .int8: return -128...127
        case .int16: return -32768...32767
        case .uint16: return 0...65535
        default: return nil
        }
    }
}

/// The fields of a NIfTI-1 header this module uses.
public struct NIfTIHeader: Sendable, Equatable {
    public var bigEndian: Bool
    /// Sizes along i, j, k and the product of dims 4...7 (number of volumes), each at least 1.
    public var nx: Int, ny: Int, nz: Int, volumes: Int
    public var dataType: NIfTIDataType
    /// pixdim[1...3]: voxel size in xyz_units.
    public var voxelSize: [Float]
    public var voxOffset: Int
    /// scl_slope/scl_inter, with slope 0 (or non-finite) meaning "no scaling" as nifti1.h says.
    public var slope: Double, intercept: Double
    public var calMin: Double, calMax: Double
    /// Voxel-to-world rotation/scale (3×3, row = world axis), used only for orientation.
    public var affine: [[Double]]

    public static let size = 348

    /// Parses the 348-byte header at the start of `bytes`.
    public init(bytes: [UInt8], path: String) throws {
        guard bytes.count >= NIfTIHeader.size else {
            throw MedSynthError(file: path, "truncated: NIfTI header needs 348 bytes, file has \(bytes.count)")
        }
        let le = readUInt32(bytes, at: 0, bigEndian: false), be = readUInt32(bytes, at: 0, bigEndian: true)
        if le == 348 { bigEndian = false }
        else if be == 348 { bigEndian = true }
        else if le == 540 || be == 540 { throw MedSynthError(file: path, "not supported: NIfTI-2") }
        else { throw MedSynthError(file: path, "not a NIfTI-1 file (sizeof_hdr is \(le), expected 348)") }
        let big = bigEndian
        func i16(_ o: Int) -> Int { Int(Int16(bitPattern: readUInt16(bytes, at: o, bigEndian: big))) }
        func f32(_ o: Int) -> Float { Float(bitPattern: readUInt32(bytes, at: o, bigEndian: big)) }

        let magic = Array(bytes[344..<348])
        if magic == [0x6E, 0x69, 0x31, 0x00] {
            throw MedSynthError(file: path, "not supported: NIfTI-1 header/image pair (.hdr/.img); convert to a single .nii")
        }
        guard magic == [0x6E, 0x2B, 0x31, 0x00] else {
            throw MedSynthError(file: path, "not a NIfTI-1 file (magic at offset 344 is not 'n+1')")
        }
        let ndim = i16(40)
        guard (1...7).contains(ndim) else { throw MedSynthError(file: path, "dim[0] is \(ndim), expected 1...7") }
        var dims = [Int](repeating: 1, count: 8)
        for d in 1...ndim {
            dims[d] = i16(40 + 2 * d)
            guard dims[d] >= 1 else { throw MedSynthError(file: path, "dim[\(d)] is \(dims[d]), must be at least 1") }
        }
        nx = dims[1]; ny = dims[2]; nz = dims[3]
        volumes = dims[4] * dims[5] * dims[6] * dims[7]  // ≤ 32767^4 < 2^60: cannot overflow
        let code = Int16(i16(70))
        guard let type = NIfTIDataType(rawValue: code) else {
            throw MedSynthError(file: path, "not supported: NIfTI datatype \(code)")
        }
        dataType = type
        voxelSize = [f32(80), f32(84), f32(88)]
        let offset = f32(108)
        guard offset.isFinite, offset >= 348, offset < 1e12 else {
            throw MedSynthError(file: path, "vox_offset \(offset) is invalid")
        }
        voxOffset = Int(offset)
        let s = Double(f32(112)), b = Double(f32(116))
        if s != 0 && s.isFinite && b.isFinite { slope = s; intercept = b } else { slope = 1; intercept = 0 }
        calMax = Double(f32(124)); calMin = Double(f32(128))

        let qformCode = i16(252), sformCode = i16(254)
        if sformCode > 0 {
            affine = (0..<3).map { r in (0..<3).map { c in Double(f32(280 + 16 * r + 4 * c)) } }
        } else if qformCode > 0 {
            // nifti1.h METHOD 2: rotation from the quaternion (b, c, d), a = sqrt(1 - b² - c² - d²),
            // third column scaled by qfac = pixdim[0] (±1).
            let qb = Double(f32(256)), qc = Double(f32(260)), qd = Double(f32(264))
            let qa = max(0, 1 - (qb * qb + qc * qc + qd * qd)).squareRoot()
            let qfac: Double = f32(76) < 0 ? -1 : 1
            affine = [
                [qa * qa + qb * qb - qc * qc - qd * qd, 2 * (qb * qc - qa * qd), 2 * (qb * qd + qa * qc) * qfac],
                [2 * (qb * qc + qa * qd), qa * qa + qc * qc - qb * qb - qd * qd, 2 * (qc * qd - qa * qb) * qfac],
                [2 * (qb * qd - qa * qc), 2 * (qc * qd + qa * qb), (qa * qa + qd * qd - qb * qb - qc * qc) * qfac],
            ]
        } else {
            affine = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
        }
    }

    /// Bytes of voxel data: nx·ny·nz·volumes·bytesPerVoxel, nil on overflow.
    public var dataBytes: Int? { checkedProduct([nx, ny, nz, volumes, dataType.bytes]) }

    /// For each world axis (R, A, S): the voxel axis that runs along it and whether it runs backwards.
    /// Greedy on the largest |entry| as nibabel's `io_orientation`; falls back to the identity.
    public var orientation: (axis: [Int], flip: [Bool]) {
        var axis = [0, 1, 2], flip = [false, false, false]
        var usedWorld = Set<Int>(), usedVoxel = Set<Int>()
        for _ in 0..<3 {
            var best = 0.0, bw = -1, bv = -1
            for w in 0..<3 where !usedWorld.contains(w) {
                for v in 0..<3 where !usedVoxel.contains(v) {
                    let m = abs(affine[w][v])
                    if m.isFinite && m > best { best = m; bw = w; bv = v }
                }
            }
            guard bw >= 0 else { return ([0, 1, 2], [false, false, false]) }
            usedWorld.insert(bw); usedVoxel.insert(bv)
            axis[bw] = bv
            flip[bw] = affine[bw][bv] < 0
        }
        return (axis, flip)
    }
}

/// A NIfTI-1 volume held in memory (decompressed), read slice by slice.
public struct NIfTIVolume: Sendable {
    public let path: String
    public let header: NIfTIHeader
    /// The whole (decompressed) file; voxels start at `header.voxOffset`.
    let bytes: [UInt8]

    /// Reads .nii or .nii.gz (gzip detected by its magic bytes, not the name).
    public init(contentsOf url: URL, maxDecompressedBytes: Int = 2 << 30, maxPixels: Int = DecodeLimits.maxPixels,
                maxImagePixels: Int = DecodeLimits.maxImagePixels) throws {
        try self.init(bytes: readFileBytes(url), path: url.path, maxDecompressedBytes: maxDecompressedBytes,
                      maxPixels: maxPixels, maxImagePixels: maxImagePixels)
    }

    /// - Parameters: maxPixels, maxImagePixels: limits on voxels per file and pixels per slice
    ///   (`DecodeLimits`), checked from the header before anything is inflated.
    public init(bytes input: [UInt8], path: String, maxDecompressedBytes: Int = 2 << 30,
                maxPixels: Int = DecodeLimits.maxPixels, maxImagePixels: Int = DecodeLimits.maxImagePixels) throws {
        self.path = path
        var bytes = input
        let gzipped = input.count >= 2 && input[0] == 0x1F && input[1] == 0x8B
        if gzipped {
            // Inflate just the header first, then exactly what it claims (never more, and only as
            // far as the stream really goes), refusing claims above the cap.
            let head = try inflateBounded(input[...], format: .gzipOrZlib, maxOutput: NIfTIHeader.size, stopAtLimit: true, path: path)
            let header = try NIfTIHeader(bytes: head, path: path)
            try NIfTIVolume.checkLimits(header, maxPixels: maxPixels, maxImagePixels: maxImagePixels, path: path)
            guard let data = header.dataBytes, data <= maxDecompressedBytes - header.voxOffset else {
                throw MedSynthError(file: path, "volume \(header.nx)x\(header.ny)x\(header.nz)x\(header.volumes) of \(header.dataType) exceeds the limit of \(maxDecompressedBytes) decompressed bytes")
            }
            bytes = try inflateBounded(input[...], format: .gzipOrZlib, maxOutput: header.voxOffset + data, stopAtLimit: true,
                                       expectedSize: header.voxOffset + data, path: path)
        }
        header = try NIfTIHeader(bytes: bytes, path: path)
        guard let data = header.dataBytes, header.voxOffset <= bytes.count, data <= bytes.count - header.voxOffset else {
            throw MedSynthError(file: path, "truncated: \(header.nx)x\(header.ny)x\(header.nz)x\(header.volumes) voxels of \(header.dataType) need \(header.dataBytes.map(String.init) ?? "too many") bytes from offset \(header.voxOffset), \(gzipped ? "decompressed " : "")file has \(bytes.count)")
        }
        // The voxels are all in memory (checked above), but slicing them still costs pixels.
        try NIfTIVolume.checkLimits(header, maxPixels: maxPixels, maxImagePixels: maxImagePixels, path: path)
        self.bytes = bytes
    }

    /// Voxels per file, pixels of the largest slice in any plane, and slices per file against the limits.
    static func checkLimits(_ h: NIfTIHeader, maxPixels: Int, maxImagePixels: Int, path: String) throws {
        let sides = [h.nx, h.ny, h.nz].sorted()
        // The largest plane is the two longest sides; a file gives at most the shortest side's
        // slices per volume in the plane of the two longest, at most the longest side's otherwise.
        guard let slices = checkedProduct([sides[2], h.volumes]) else {
            throw MedSynthError(file: path, "\(h.volumes) volumes is above the limit of \(DecodeLimits.maxImagesPerFile) images per file")
        }
        try DecodeLimits.check(imageWidth: sides[1], height: sides[2], images: 1, maxImagePixels: maxImagePixels,
                               maxPixels: Int.max, what: "slice", path: path)
        guard slices <= DecodeLimits.maxImagesPerFile else {
            throw MedSynthError(file: path, "\(sides[2]) slices x \(h.volumes) volumes is above the limit of \(DecodeLimits.maxImagesPerFile) images per file")
        }
        guard let voxels = checkedProduct([h.nx, h.ny, h.nz, h.volumes]), voxels <= maxPixels else {
            throw MedSynthError(file: path, "volume \(h.nx)x\(h.ny)x\(h.nz)x\(h.volumes) is above the limit of \(maxPixels) voxels per file (--max-pixels / MEDSYNTH_MAX_PIXELS)")
        }
    }

    /// Stored-to-modality encoding; cal_min/cal_max become the file window when cal_max > cal_min.
    public var encoding: PixelEncoding {
        let h = header
        var window: (Double, Double)? = nil
        if h.calMax > h.calMin && h.calMin.isFinite && h.calMax.isFinite {
            // Edges exactly at cal_min and cal_max (see `windowEdges`).
            window = ((h.calMin + h.calMax) / 2 + 0.5, h.calMax - h.calMin + 1)
        }
        return PixelEncoding(slope: h.slope, intercept: h.intercept, storedRange: h.dataType.storedRange,
                             storedBits: h.dataType.bytes * 8, fileWindow: window)
    }

    /// Number of slices along `axis` (after reorientation to RAS+).
    public func sliceCount(_ axis: SliceAxis) -> Int {
        rasDims[worldAxis(axis)]
    }

    /// Sizes along R, A, S.
    var rasDims: [Int] {
        let dims = [header.nx, header.ny, header.nz]
        return header.orientation.axis.map { dims[$0] }
    }

    func worldAxis(_ axis: SliceAxis) -> Int {
        switch axis {
        case .sagittal: return 0
        case .coronal: return 1
        case .axial: return 2
        }
    }

    /// Stored value of element `index` (caller keeps it in range).
    @inline(__always)
    func stored(_ raw: UnsafeBufferPointer<UInt8>, _ index: Int) -> Float {
        let base = header.voxOffset, big = header.bigEndian
        switch header.dataType {
        case .uint8: return Float(raw[base + index])
        case .int8: return Float(Int8(bitPattern: raw[base + index]))
        case .int16: return Float(Int16(bitPattern: load16(raw, base + 2 * index, big)))
        case .uint16: return Float(load16(raw, base + 2 * index, big))
        case .int32: return Float(Int32(bitPattern: load32(raw, base + 4 * index, big)))
        case .uint32: return Float(load32(raw, base + 4 * index, big))
        case .float32: return Float(bitPattern: load32(raw, base + 4 * index, big))
        case .float64:
            let lo = UInt64(load32(raw, base + 8 * index, big)), hi = UInt64(load32(raw, base + 8 * index + 4, big))
            return Float(Double(bitPattern: big ? (lo << 32 | hi) : (hi << 32 | lo)))
        }
    }

    /// One 2-D slice of stored values, oriented as described at the top of this file.
    public func slice(_ axis: SliceAxis, index: Int, volume: Int) -> ScalarFrame {
        let (perm, flip) = header.orientation
        let dims = [header.nx, header.ny, header.nz]
        let strides = [1, header.nx, header.nx * header.ny]
        // Offset and step of each RAS axis in the voxel array.
        var base = volume * header.nx * header.ny * header.nz
        var step = [0, 0, 0], size = [0, 0, 0]
        for w in 0..<3 {
            let v = perm[w]
            size[w] = dims[v]
            step[w] = flip[w] ? -strides[v] : strides[v]
            if flip[w] { base += (dims[v] - 1) * strides[v] }
        }
        let fixed = worldAxis(axis)
        let (col, row) = fixed == 2 ? (0, 1) : (fixed == 1 ? (0, 2) : (1, 2))
        let width = size[col], height = size[row]
        var values = [Float](repeating: 0, count: width * height)
        bytes.withUnsafeBufferPointer { raw in
            values.withUnsafeMutableBufferPointer { out in
                let origin = base + index * step[fixed]
                for y in 0..<height {
                    // Row 0 is the top of the image: the far end of the row axis (anterior/superior).
                    let rowStart = origin + (height - 1 - y) * step[row]
                    for x in 0..<width {
                        out[y * width + x] = stored(raw, rowStart + x * step[col])
                    }
                }
            }
        }
        return ScalarFrame(width: width, height: height, channels: 1, values: values)
    }

    /// Modality-value range over the given volumes (NaNs ignored).
    func modalityRange(volumes: [Int]) -> ClosedRange<Double>? {
        let n = header.nx * header.ny * header.nz
        var lo = Float.infinity, hi = -Float.infinity
        bytes.withUnsafeBufferPointer { raw in
            for t in volumes {
                for i in (t * n)..<((t + 1) * n) {
                    let v = stored(raw, i)
                    if v.isFinite { lo = min(lo, v); hi = max(hi, v) }
                }
            }
        }
        guard lo <= hi else { return nil }
        let a = Double(lo) * header.slope + header.intercept, b = Double(hi) * header.slope + header.intercept
        return min(a, b)...max(a, b)
    }

    /// Cuts the volume into 2-D images with `options` (axis, slices, volume, window, bit depth).
    /// Images come volume by volume, slices in increasing index order. `.fullRange` and the
    /// no-cal_min/cal_max default use the range of the whole selected volume(s), so slices of one
    /// file share a display mapping.
    public func slices(_ options: MedicalReadOptions = .init()) throws -> [Image] {
        let count = sliceCount(options.axis)
        let volumeList: [Int]
        if let v = options.volume {
            guard v >= 0 && v < header.volumes else {
                throw MedSynthError(file: path, "volume \(v) does not exist (file has \(header.volumes))")
            }
            volumeList = [v]
        } else {
            volumeList = Array(0..<header.volumes)
        }
        let encoding = self.encoding
        let depth = try resolveBitDepth(options.bitDepth, encoding: encoding, path: path)
        var cachedRange: ClosedRange<Double>?? = nil
        let range: () -> ClosedRange<Double>? = {
            if let cached = cachedRange { return cached }
            let r = modalityRange(volumes: volumeList)
            cachedRange = .some(r)
            return r
        }
        let mapping = try resolveMapping(options.window, encoding: encoding, bitDepth: depth, path: path, dataRange: range)

        var indices: [Int]
        var minFraction: Double? = nil, threshold = 0.0
        switch options.slices {
        case .all, .foreground:
            indices = Array(0..<count)
            if case .foreground(let fraction, let explicit) = options.slices {
                minFraction = fraction
                if let explicit { threshold = explicit }
                else if let r = range() { threshold = r.lowerBound + 0.1 * (r.upperBound - r.lowerBound) }
            }
        case .range(let r):
            guard r.lowerBound >= 0, r.upperBound < count else {
                throw MedSynthError(file: path, "slices \(r.lowerBound)-\(r.upperBound) are outside 0-\(count - 1) along \(options.axis.rawValue)")
            }
            indices = Array(r)
        }
        var out: [Image] = []
        for t in volumeList {
            for k in indices {
                let frame = slice(options.axis, index: k, volume: t)
                if let minFraction {
                    let foreground = frame.values.reduce(0) { n, v in
                        n + (Double(v) * header.slope + header.intercept > threshold ? 1 : 0)
                    }
                    if Double(foreground) < minFraction * Double(frame.values.count) { continue }
                }
                out.append(renderFrame(frame, encoding: encoding, mapping: mapping, bitDepth: depth))
            }
        }
        return out
    }
}

@inline(__always)
private func load16(_ raw: UnsafeBufferPointer<UInt8>, _ o: Int, _ big: Bool) -> UInt16 {
    let a = UInt16(raw[o]), b = UInt16(raw[o + 1])
    return big ? (a << 8 | b) : (b << 8 | a)
}

@inline(__always)
private func load32(_ raw: UnsafeBufferPointer<UInt8>, _ o: Int, _ big: Bool) -> UInt32 {
    let a = UInt32(raw[o]), b = UInt32(raw[o + 1]), c = UInt32(raw[o + 2]), d = UInt32(raw[o + 3])
    return big ? (a << 24 | b << 16 | c << 8 | d) : (d << 24 | c << 16 | b << 8 | a)
}
