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

/// A NIfTI-1 volume, read slice by slice, one k-plane (nx·ny voxels) at a time, so memory follows
/// the size of a slice, not of the volume (a 500 KB .nii.gz can declare 512 MB of voxels). The
/// voxels of a .nii or a small .nii.gz are held in memory; a .nii.gz inflating to more than
/// `inMemoryBytes` is inflated once, plane by plane, into an anonymous temporary file (deleted as
/// soon as it is made) and read back from there. Opening the file makes that one pass over every
/// plane: it proves the data is all there (a cut stream fails before any image is made) and records
/// each volume's value range.
public struct NIfTIVolume: Sendable {
    public let path: String
    public let header: NIfTIHeader
    /// The file (or the inflated .nii.gz) in memory, voxels from `header.voxOffset`; empty when spilled.
    let bytes: [UInt8]
    /// The voxels (from offset 0) of a large .nii.gz.
    let spill: SpillFile?
    /// Finite stored-value range of each volume (nil: no finite value).
    private(set) var storedRanges: [ClosedRange<Float>?] = []

    /// A .nii.gz whose voxels take more than this goes to a temporary file instead of memory.
    static let inMemoryBytes = 64 << 20
    /// A batch of slices is kept under this many bytes of raw voxels; slices across the storage
    /// planes cost one pass over the volume per batch.
    static let batchBytes = 32 << 20

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
        let gzipped = input.count >= 2 && input[0] == 0x1F && input[1] == 0x8B
        var memory = input
        var inflateToSpill = false
        if gzipped {
            // Inflate just the header first, then what it claims (never more, and only as far as
            // the stream really goes), refusing claims above the cap.
            let head = try inflateBounded(input[...], format: .gzipOrZlib, maxOutput: NIfTIHeader.size, stopAtLimit: true, path: path)
            let header = try NIfTIHeader(bytes: head, path: path)
            try NIfTIVolume.checkLimits(header, maxPixels: maxPixels, maxImagePixels: maxImagePixels, path: path)
            guard let data = header.dataBytes, data <= maxDecompressedBytes - header.voxOffset else {
                throw MedSynthError(file: path, "volume \(header.nx)x\(header.ny)x\(header.nz)x\(header.volumes) of \(header.dataType) exceeds the limit of \(maxDecompressedBytes) decompressed bytes")
            }
            if data <= NIfTIVolume.inMemoryBytes {
                memory = try inflateBounded(input[...], format: .gzipOrZlib, maxOutput: header.voxOffset + data, stopAtLimit: true,
                                            expectedSize: header.voxOffset + data, path: path)
            } else {
                memory = head
                inflateToSpill = true
            }
        }
        header = try NIfTIHeader(bytes: memory, path: path)
        if inflateToSpill {
            bytes = []
            spill = try SpillFile(for: path)
            storedRanges = try scanRanges(inflating: input)
        } else {
            guard let data = header.dataBytes, header.voxOffset <= memory.count, data <= memory.count - header.voxOffset else {
                throw MedSynthError(file: path, "truncated: \(header.nx)x\(header.ny)x\(header.nz)x\(header.volumes) voxels of \(header.dataType) need \(header.dataBytes.map(String.init) ?? "too many") bytes from offset \(header.voxOffset), \(gzipped ? "decompressed " : "")file has \(memory.count)")
            }
            // The voxels are all in memory (checked above), but slicing them still costs pixels.
            try NIfTIVolume.checkLimits(header, maxPixels: maxPixels, maxImagePixels: maxImagePixels, path: path)
            bytes = memory
            spill = nil
            storedRanges = try scanRanges(inflating: nil)
        }
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

    // MARK: Planes

    /// Reads k-planes (nx·ny voxels, raw bytes) from memory or the spill file. Planes are numbered k + nz·t.
    final class PlaneCursor {
        let volume: NIfTIVolume
        private var buffer: [UInt8]
        let planeBytes: Int

        init(_ volume: NIfTIVolume) {
            self.volume = volume
            let h = volume.header
            planeBytes = h.nx * h.ny * h.dataType.bytes  // ≤ the checked volume size
            buffer = volume.spill != nil ? [UInt8](repeating: 0, count: planeBytes) : []
        }

        /// Calls `body` with the raw bytes of plane `p` (`planeBytes` of them).
        func withPlane<R>(_ p: Int, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
            if let spill = volume.spill {
                try buffer.withUnsafeMutableBytes { try spill.read(into: $0, at: p * planeBytes) }
                return try buffer.withUnsafeBytes { try body($0) }
            }
            // The plane lies inside the voxel data (checked when the volume was opened).
            let start = volume.header.voxOffset + p * planeBytes
            precondition(start >= 0 && start + planeBytes <= volume.bytes.count, "NIfTI plane outside the checked data")
            return try volume.bytes.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[start..<(start + planeBytes)])) }
        }
    }

    /// Stored values of `count` voxels in file order and byte order, as Float.
    static func storedValues(_ raw: UnsafeRawBufferPointer, count: Int, type: NIfTIDataType, bigEndian big: Bool) -> [Float] {
        precondition(raw.count >= count * type.bytes, "NIfTI voxels outside the buffer")
        var values = [Float](repeating: 0, count: count)
        let b = raw.bindMemory(to: UInt8.self).baseAddress!
        values.withUnsafeMutableBufferPointer { out in
            switch type {
            case .uint8: for i in 0..<count { out[i] = Float(b[i]) }
            case .int8: for i in 0..<count { out[i] = Float(Int8(bitPattern: b[i])) }
            case .int16: for i in 0..<count { out[i] = Float(Int16(bitPattern: load16(b, 2 * i, big))) }
            case .uint16: for i in 0..<count { out[i] = Float(load16(b, 2 * i, big)) }
            case .int32: for i in 0..<count { out[i] = Float(Int32(bitPattern: load32(b, 4 * i, big))) }
            case .uint32: for i in 0..<count { out[i] = Float(load32(b, 4 * i, big)) }
            case .float32: for i in 0..<count { out[i] = Float(bitPattern: load32(b, 4 * i, big)) }
            case .float64:
                for i in 0..<count {
                    let lo = UInt64(load32(b, 8 * i, big)), hi = UInt64(load32(b, 8 * i + 4, big))
                    out[i] = Float(Double(bitPattern: big ? (lo << 32 | hi) : (hi << 32 | lo)))
                }
            }
        }
        return values
    }

    /// A plane's stored values as Float.
    func planeValues(_ p: Int, cursor: PlaneCursor) throws -> [Float] {
        try cursor.withPlane(p) { NIfTIVolume.storedValues($0, count: header.nx * header.ny, type: header.dataType, bigEndian: header.bigEndian) }
    }

    /// One pass over every plane: finite stored-value range per volume. With `input` (a large
    /// .nii.gz), the planes are inflated from it and written to the spill file on the way, which
    /// also proves the stream holds every voxel the header declares.
    private func scanRanges(inflating input: [UInt8]?) throws -> [ClosedRange<Float>?] {
        let cursor = PlaneCursor(self)
        let count = header.nx * header.ny, type = header.dataType, big = header.bigEndian
        var inflater: StreamingInflater? = nil
        var plane: [UInt8] = []
        if let input {
            inflater = try StreamingInflater(input, path: path)
            var scratch: [UInt8] = []
            try inflater!.skip(header.voxOffset, scratch: &scratch)
            plane = [UInt8](repeating: 0, count: cursor.planeBytes)
        }
        var ranges: [ClosedRange<Float>?] = []
        ranges.reserveCapacity(header.volumes)
        for t in 0..<header.volumes {
            var lo = Float.infinity, hi = -Float.infinity
            for k in 0..<header.nz {
                let p = k + header.nz * t
                let values: [Float]
                if let inflater, let spill {
                    try plane.withUnsafeMutableBytes { try inflater.read(into: $0) }
                    try plane.withUnsafeBytes { try spill.write($0, at: p * cursor.planeBytes) }
                    values = plane.withUnsafeBytes { NIfTIVolume.storedValues($0, count: count, type: type, bigEndian: big) }
                } else {
                    values = try planeValues(p, cursor: cursor)
                }
                for x in values where x.isFinite { lo = min(lo, x); hi = max(hi, x) }
            }
            ranges.append(lo <= hi ? lo...hi : nil)
        }
        return ranges
    }

    /// Modality-value range over the given volumes (NaNs ignored).
    func modalityRange(volumes: [Int]) -> ClosedRange<Double>? {
        let ranges = volumes.compactMap { storedRanges[$0] }
        guard let lo = ranges.map(\.lowerBound).min(), let hi = ranges.map(\.upperBound).max() else { return nil }
        let a = Double(lo) * header.slope + header.intercept, b = Double(hi) * header.slope + header.intercept
        return min(a, b)...max(a, b)
    }

    /// Where the voxels of a slice along one axis sit in the storage planes. Each of the slice's
    /// three roles (fixed axis, image rows, image columns) runs along one voxel axis; the one on
    /// voxel axis k picks the plane, the other two are offsets inside a plane.
    struct SliceGeometry {
        let width: Int, height: Int
        /// Which role runs along k: 0 the fixed axis, 1 the rows, 2 the columns.
        let kRole: Int
        let nz: Int, kFlipped: Bool
        /// In-plane element offset at RAS coordinate 0 and step per coordinate, per role (unused for kRole).
        let start: [Int], step: [Int]

        init(header h: NIfTIHeader, fixedWorldAxis fixed: Int) {
            let (perm, flip) = h.orientation
            let dims = [h.nx, h.ny, h.nz], strides = [1, h.nx, 0]
            let (col, row) = fixed == 2 ? (0, 1) : (fixed == 1 ? (0, 2) : (1, 2))
            let worlds = [fixed, row, col]
            var start = [0, 0, 0], step = [0, 0, 0], kRole = 0
            for (role, w) in worlds.enumerated() {
                let v = perm[w]
                if v == 2 { kRole = role; continue }
                step[role] = flip[w] ? -strides[v] : strides[v]
                start[role] = flip[w] ? (dims[v] - 1) * strides[v] : 0
            }
            self.kRole = kRole
            self.start = start
            self.step = step
            width = dims[perm[col]]
            height = dims[perm[row]]
            nz = h.nz
            kFlipped = flip[worlds[kRole]]
        }

        /// RAS coordinate of the role along k in plane k (and back: the map is its own inverse).
        func rasCoordinate(k: Int) -> Int { kFlipped ? nz - 1 - k : k }
        /// In-plane offset of RAS coordinate `c` of `role`.
        func offset(_ role: Int, _ c: Int) -> Int { start[role] + c * step[role] }
    }

    /// Stored values of slices `indices` (along `axis`) of volume `t`, in order, as raw voxels (file
    /// byte order); one pass over the planes they need, through `cursor`.
    func extractRawSlices(axis: SliceAxis, indices: [Int], volume t: Int, cursor: PlaneCursor) throws -> [[UInt8]] {
        let g = SliceGeometry(header: header, fixedWorldAxis: worldAxis(axis))
        let (w, h, e) = (g.width, g.height, header.dataType.bytes)
        var slices = indices.map { _ in [UInt8](repeating: 0, count: w * h * e) }
        let planes = g.kRole == 0 ? indices.map { g.rasCoordinate(k: $0) }.sorted() : Array(0..<header.nz)
        var previous = -1
        for k in planes where k != previous {
            previous = k
            let c = g.rasCoordinate(k: k)
            try cursor.withPlane(k + header.nz * t) { plane in
                precondition(plane.count == header.nx * header.ny * e, "NIfTI plane size")
                for (b, s) in indices.enumerated() {
                    // Offsets are linear in each coordinate, so the corners bound them all: checked
                    // here once per slice and plane instead of at every voxel.
                    let roles = [0, 1, 2].filter { $0 != g.kRole }
                    let sizes = [1, h, w]
                    let corners = [0, 1].flatMap { a in [0, 1].map { b in
                        roles.enumerated().reduce(0) { sum, item in
                            let (n, role) = item
                            let c = role == 0 ? s : (n == 0 ? a : b) * (sizes[role] - 1)
                            return sum + g.offset(role, c)
                        }
                    } }
                    precondition(corners.min()! >= 0 && corners.max()! < header.nx * header.ny, "NIfTI slice geometry outside the plane")
                    slices[b].withUnsafeMutableBytes { out in
                        func copy(_ to: Int, _ from: Int) {
                            switch e {
                            case 1: out[to] = plane[from]
                            case 2: out.storeBytes(of: plane.loadUnaligned(fromByteOffset: 2 * from, as: UInt16.self), toByteOffset: 2 * to, as: UInt16.self)
                            case 4: out.storeBytes(of: plane.loadUnaligned(fromByteOffset: 4 * from, as: UInt32.self), toByteOffset: 4 * to, as: UInt32.self)
                            default: out.storeBytes(of: plane.loadUnaligned(fromByteOffset: 8 * from, as: UInt64.self), toByteOffset: 8 * to, as: UInt64.self)
                            }
                        }
                        switch g.kRole {
                        case 0:
                            guard s == c else { return }
                            for y in 0..<h {
                                let rowOffset = g.offset(1, h - 1 - y)
                                for x in 0..<w { copy(y * w + x, rowOffset + g.offset(2, x)) }
                            }
                        case 1:
                            // Row 0 is the top of the image: the far end of the row axis (anterior/superior).
                            let y = h - 1 - c, base = g.offset(0, s)
                            for x in 0..<w { copy(y * w + x, base + g.offset(2, x)) }
                        default:
                            let x = c, base = g.offset(0, s)
                            for y in 0..<h { copy(y * w + x, base + g.offset(1, h - 1 - y)) }
                        }
                    }
                }
            }
        }
        return slices
    }

    /// Raw slice voxels as a frame of stored values.
    func frame(_ raw: [UInt8], axis: SliceAxis) -> ScalarFrame {
        let g = SliceGeometry(header: header, fixedWorldAxis: worldAxis(axis))
        let values = raw.withUnsafeBytes {
            NIfTIVolume.storedValues($0, count: g.width * g.height, type: header.dataType, bigEndian: header.bigEndian)
        }
        return ScalarFrame(width: g.width, height: g.height, channels: 1, values: values)
    }

    /// One 2-D slice of stored values, oriented as described at the top of this file.
    public func slice(_ axis: SliceAxis, index: Int, volume: Int) throws -> ScalarFrame {
        guard index >= 0 && index < sliceCount(axis), volume >= 0 && volume < header.volumes else {
            throw MedSynthError(file: path, "slice \(index) of volume \(volume) does not exist")
        }
        return frame(try extractRawSlices(axis: axis, indices: [index], volume: volume, cursor: PlaneCursor(self))[0], axis: axis)
    }

    // MARK: Slices as images

    /// What `forEachSlice` produces for some read options, settled before any image is made: the
    /// (volume, slice index) pairs in output order and the display mapping.
    public struct SlicePlan: Sendable {
        public struct Entry: Sendable, Equatable { public let volume: Int, index: Int }
        public let axis: SliceAxis
        public let entries: [Entry]
        let encoding: PixelEncoding
        let mapping: DisplayMapping
        let bitDepth: Int
        public var count: Int { entries.count }
    }

    /// Settles which slices `options` (axis, slices, volume, window, bit depth) select and how they
    /// are windowed. Images come volume by volume, slices in increasing index order. `.fullRange` and
    /// the no-cal_min/cal_max default use the range of the whole selected volume(s), so slices of one
    /// file share a display mapping. `foreground` selection costs one pass over the selected volumes.
    public func plan(_ options: MedicalReadOptions = .init()) throws -> SlicePlan {
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
        let range = modalityRange(volumes: volumeList)
        let mapping = try resolveMapping(options.window, encoding: encoding, bitDepth: depth, path: path, dataRange: { range })

        var entries: [SlicePlan.Entry] = []
        switch options.slices {
        case .all:
            for t in volumeList { for k in 0..<count { entries.append(.init(volume: t, index: k)) } }
        case .range(let r):
            guard r.lowerBound >= 0, r.upperBound < count else {
                throw MedSynthError(file: path, "slices \(r.lowerBound)-\(r.upperBound) are outside 0-\(count - 1) along \(options.axis.rawValue)")
            }
            for t in volumeList { for k in r { entries.append(.init(volume: t, index: k)) } }
        case .foreground(let fraction, let explicit):
            var threshold = 0.0
            if let explicit { threshold = explicit } else if let r = range { threshold = r.lowerBound + 0.1 * (r.upperBound - r.lowerBound) }
            let g = SliceGeometry(header: header, fixedWorldAxis: worldAxis(options.axis))
            let pixels = Double(g.width * g.height)
            let cursor = PlaneCursor(self)
            for t in volumeList {
                let counts = try foregroundCounts(volume: t, fixedWorldAxis: worldAxis(options.axis), threshold: threshold, cursor: cursor)
                for k in 0..<count where Double(counts[k]) >= fraction * pixels { entries.append(.init(volume: t, index: k)) }
            }
        }
        return SlicePlan(axis: options.axis, entries: entries, encoding: encoding, mapping: mapping, bitDepth: depth)
    }

    /// Pixels above `threshold` (modality value) in each slice of volume `t` along world axis `fixed`.
    private func foregroundCounts(volume t: Int, fixedWorldAxis fixed: Int, threshold: Double, cursor: PlaneCursor) throws -> [Int] {
        let (perm, flip) = header.orientation
        let (nx, ny) = (header.nx, header.ny)
        let fixedVoxel = perm[fixed], fixedFlip = flip[fixed]
        let size = [nx, ny, header.nz][fixedVoxel]
        var counts = [Int](repeating: 0, count: size)
        let slope = header.slope, intercept = header.intercept
        for k in 0..<header.nz {
            let plane = try planeValues(k + header.nz * t, cursor: cursor)
            for j in 0..<ny {
                for i in 0..<nx where Double(plane[i + nx * j]) * slope + intercept > threshold {
                    let v = fixedVoxel == 0 ? i : (fixedVoxel == 1 ? j : k)
                    counts[fixedFlip ? size - 1 - v : v] += 1
                }
            }
        }
        return counts
    }

    /// Calls `body` with each image of `plan`, in order, keeping at most a batch of slices in
    /// memory (`batchBytes`).
    public func forEachSlice(_ plan: SlicePlan, _ body: (Image) throws -> Void) throws {
        let g = SliceGeometry(header: header, fixedWorldAxis: worldAxis(plan.axis))
        let batch = max(1, NIfTIVolume.batchBytes / max(1, header.dataType.bytes * g.width * g.height))
        let cursor = PlaneCursor(self)
        var start = 0
        while start < plan.entries.count {
            let t = plan.entries[start].volume
            var end = start
            while end < plan.entries.count && end - start < batch && plan.entries[end].volume == t { end += 1 }
            var slices = try extractRawSlices(axis: plan.axis, indices: plan.entries[start..<end].map(\.index), volume: t, cursor: cursor)
            for b in slices.indices {
                let stored = frame(slices[b], axis: plan.axis)
                slices[b] = []  // each slice's memory goes as soon as it is rendered
                try body(renderFrame(stored, encoding: plan.encoding, mapping: plan.mapping, bitDepth: plan.bitDepth))
            }
            start = end
        }
    }

    /// Image `position` of `plan` alone (what `forEachSlice` gives at that position): an axial slice
    /// costs one plane read, a slice across the storage planes one pass over the planes.
    public func image(_ plan: SlicePlan, at position: Int) throws -> Image {
        guard plan.entries.indices.contains(position) else {
            throw MedSynthError(file: path, "image \(position) does not exist (the file gives \(plan.count))")
        }
        let entry = plan.entries[position]
        let raw = try extractRawSlices(axis: plan.axis, indices: [entry.index], volume: entry.volume, cursor: PlaneCursor(self))[0]
        return renderFrame(frame(raw, axis: plan.axis), encoding: plan.encoding, mapping: plan.mapping, bitDepth: plan.bitDepth)
    }

    /// Cuts the volume into 2-D images with `options` (see `plan`), all at once.
    public func slices(_ options: MedicalReadOptions = .init()) throws -> [Image] {
        var out: [Image] = []
        try forEachSlice(plan(options)) { out.append($0) }
        return out
    }
}

@inline(__always)
private func load16(_ raw: UnsafePointer<UInt8>, _ o: Int, _ big: Bool) -> UInt16 {
    let a = UInt16(raw[o]), b = UInt16(raw[o + 1])
    return big ? (a << 8 | b) : (b << 8 | a)
}

@inline(__always)
private func load32(_ raw: UnsafePointer<UInt8>, _ o: Int, _ big: Bool) -> UInt32 {
    let a = UInt32(raw[o]), b = UInt32(raw[o + 1]), c = UInt32(raw[o + 2]), d = UInt32(raw[o + 3])
    return big ? (a << 24 | b << 16 | c << 8 | d) : (d << 24 | c << 16 | b << 8 | a)
}
