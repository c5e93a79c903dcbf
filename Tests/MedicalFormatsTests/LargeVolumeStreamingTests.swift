import Foundation
import XCTest
@testable import MedicalFormats
import Imaging
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Issue 16: a small valid .nii.gz can declare hundreds of MB of voxels (zeros compress ~1000:1), and
/// every command must stay far below 1 GB on it. Memory must follow the size of a slice, not of the
/// volume. Here a 128 MB int16 volume (256 x 256 x 1024, a ~0.13 MB file) is read by the built
/// binary, and the peak RSS of that child (its VmHWM) must stay under 150 MB; before
/// the volume was streamed, `export` held the inflated voxels and every slice at once (~400 MB).
/// The full-size case (512 x 512 x 1024, the default pixel limit) is measured by
/// scripts/fixtures/check_export_memory.sh.
final class LargeVolumeStreamingTests: XCTestCase {
    static let (nx, ny, nz) = (256, 256, 1024)

    /// Plane 0 holds a signed ramp, every other voxel is 0. Written as gzip members (RFC 1952 §2.2):
    /// the header and plane 0, then one 4 MB member of zeros repeated, so making it takes no time.
    func makeVolume(at url: URL) throws {
        let (nx, ny, nz) = (Self.nx, Self.ny, Self.nz)
        var header = ByteWriter()
        header.i32(348)
        header.bytes += [UInt8](repeating: 0, count: 36)
        for d in [3, nx, ny, nz, 1, 1, 1, 1] { header.i16(Int16(d)) }
        header.bytes += [UInt8](repeating: 0, count: 14)
        header.i16(NIfTIDataType.int16.rawValue); header.i16(16); header.i16(0)
        for p in [1, 1, 1, 1, 0, 0, 0, 0] as [Float] { header.f32(p) }
        header.f32(352); header.f32(1); header.f32(0)
        header.bytes += [UInt8](repeating: 0, count: 344 - header.bytes.count)
        header.bytes += [0x6E, 0x2B, 0x31, 0x00, 0, 0, 0, 0]
        var first = ByteWriter()
        first.bytes = header.bytes
        for v in Self.planeZero() { first.i16(v) }
        var file = try gzipCompress(first.bytes, path: url.path)
        let zeros = try gzipCompress([UInt8](repeating: 0, count: 4 << 20), path: url.path)
        let rest = (nz - 1) * nx * ny * 2
        for _ in 0..<(rest / (4 << 20)) { file += zeros }
        file += try gzipCompress([UInt8](repeating: 0, count: rest % (4 << 20)), path: url.path)
        try Data(file).write(to: url)
    }

    /// Plane 0 (i fastest): a ramp from -1000 over the first rows.
    static func planeZero() -> [Int16] {
        (0..<(nx * ny)).map { $0 < 4096 ? Int16($0 - 1000) : 0 }
    }

    /// Runs `executable` and returns its exit status, its peak RSS and its stderr. The peak is the
    /// child's VmHWM polled from /proc every 10 ms once it has exec'd (a high-water mark, so a poll
    /// after the peak still sees it): wait4's ru_maxrss would also count the test process's own
    /// high-water mark, which Linux hands to a child spawned with vfork when it execs.
    func runMeasured(_ executable: String, _ arguments: [String], in folder: URL, timeout: TimeInterval = 120) throws
        -> (status: Int32, peakMB: Int, stderr: String) {
        let errPath = folder.appendingPathComponent("stderr.txt").path
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        guard spawned == 0 else { throw XCTSkip("cannot start \(executable): \(String(cString: strerror(spawned)))") }
        var status: Int32 = 0
        var usage = rusage()
        let deadline = Date().addingTimeInterval(timeout)
        var peakKB = 0
        // Until it execs, the spawned child shares the test process's memory and reports its
        // high-water mark (seen: 427 MB in a full suite run), so count only samples taken after
        // the exec, when the status's Name is the executable's (truncated to 15 characters).
        let name = "Name:\t" + String(URL(fileURLWithPath: executable).lastPathComponent.prefix(15))
        while wait4(pid, &status, WNOHANG, &usage) == 0 {
            if let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
               text.split(separator: "\n").contains(where: { $0 == name }),
               let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
               let kb = Int(line.dropFirst(6).trimmingCharacters(in: .whitespaces).split(separator: " ").first ?? "") {
                peakKB = max(peakKB, kb)
            }
            if Date() > deadline {
                kill(pid, SIGKILL)
                _ = wait4(pid, &status, 0, &usage)
                XCTFail("\(arguments.joined(separator: " ")) did not finish within \(timeout) s")
                break
            }
            usleep(10_000)
        }
        // A child that ended before any sample after its exec: fall back to wait4's (over-counting) peak.
        if peakKB == 0 { peakKB = Int(usage.ru_maxrss) }
        let exit = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
        let stderr = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        return (exit, peakKB / 1024, stderr)
    }

    func testCommandsOnA128MBVolumeStayUnder150MB() throws {
        let binary = try requireBinary().path
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        let input = folder.appendingPathComponent("big.nii.gz")
        try makeVolume(at: input)
        let size = try FileManager.default.attributesOfItem(atPath: input.path)[.size] as! Int
        XCTAssertLessThan(size, 1_000_000, "the input is a small file")

        // Axial export keeps the stored values exactly: slice 0 of the output is plane 0.
        let output = folder.appendingPathComponent("out.nii")
        let export = try runMeasured(binary, ["export", input.path, "-o", output.path, "--window", "stored"], in: folder)
        XCTAssertEqual(export.status, 0, export.stderr)
        print("export big.nii.gz -o out.nii --window stored: peak \(export.peakMB) MB")
        XCTAssertLessThan(export.peakMB, 150, "export to .nii peaked at \(export.peakMB) MB")
        let handle = try FileHandle(forReadingFrom: output)
        defer { try? handle.close() }
        let head = try handle.read(upToCount: 352 + Self.nx * Self.ny * 2) ?? Data()
        XCTAssertEqual(head.count, 352 + Self.nx * Self.ny * 2)
        let voxels = stride(from: 352, to: head.count, by: 2).map { Int16(bitPattern: UInt16(head[$0]) | UInt16(head[$0 + 1]) << 8) }
        XCTAssertEqual(voxels, Self.planeZero())
        let outputSize = try FileManager.default.attributesOfItem(atPath: output.path)[.size] as! Int
        XCTAssertEqual(outputSize, 352 + Self.nx * Self.ny * Self.nz * 2)
        try FileManager.default.removeItem(at: output)

        // Slices across the storage planes (coronal: 256 images of 256 x 1024) are made in batches.
        let info = try runMeasured(binary, ["info", input.path, "--axis", "coronal"], in: folder)
        XCTAssertEqual(info.status, 0, info.stderr)
        print("info big.nii.gz --axis coronal: peak \(info.peakMB) MB")
        XCTAssertLessThan(info.peakMB, 150, "info --axis coronal peaked at \(info.peakMB) MB")
    }

    /// Issue 16 for DICOM: a Deflated Explicit VR Little Endian file (PS3.5 §A.5) of 1024 frames of
    /// 256 x 256 signed 16-bit pixels (128 MB inflated, a ~0.13 MB file). Frame 0 holds a ramp along
    /// each row, every other pixel is 0. The pixel data is inflated into a temporary file and frames
    /// are read, converted and windowed one at a time, so a command holds about a frame (~30 MB);
    /// with the inflated data set in memory it was ~170 MB, and before frames were made one at a
    /// time, ~550 MB. The full-size case (512 x 512 x 1024) is measured by
    /// scripts/fixtures/check_export_memory.sh.
    func testCommandsOnA128MBDeflatedDICOMStayUnder100MB() throws {
        let (columns, rows, frames) = (256, 256, 1024)
        let binary = try requireBinary().path
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        let input = folder.appendingPathComponent("big.dcm")

        func element(_ group: UInt16, _ element: UInt16, _ vr: String, _ value: [UInt8], into out: inout [UInt8]) {
            func u16(_ v: UInt16) { out += [UInt8(v & 0xFF), UInt8(v >> 8)] }
            u16(group); u16(element); out += Array(vr.utf8)
            if ["OB", "OW"].contains(vr) {
                u16(0)
                for shift in stride(from: 0, to: 32, by: 8) { out.append(UInt8((value.count >> shift) & 0xFF)) }
            } else {
                u16(UInt16(value.count))
            }
            out += value
        }
        func text(_ s: String, pad: UInt8 = 0x20) -> [UInt8] { Array(s.utf8) + (s.utf8.count % 2 == 1 ? [pad] : []) }
        func us(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
        var metaBody: [UInt8] = []
        element(0x0002, 0x0001, "OB", [0, 1], into: &metaBody)
        element(0x0002, 0x0002, "UI", text("1.2.840.10008.5.1.4.1.1.7", pad: 0), into: &metaBody)
        element(0x0002, 0x0003, "UI", text("1.2.3.4", pad: 0), into: &metaBody)
        element(0x0002, 0x0010, "UI", text(TransferSyntax.deflatedUID, pad: 0), into: &metaBody)
        var file = [UInt8](repeating: 0, count: 128) + Array("DICM".utf8)
        element(0x0002, 0x0000, "UL", [UInt8(metaBody.count & 0xFF), UInt8(metaBody.count >> 8), 0, 0], into: &file)
        file += metaBody
        var dataSet: [UInt8] = []
        element(0x0008, 0x0060, "CS", text("CT"), into: &dataSet)
        element(0x0028, 0x0002, "US", us(1), into: &dataSet)
        element(0x0028, 0x0004, "CS", text("MONOCHROME2"), into: &dataSet)
        element(0x0028, 0x0008, "IS", text(String(frames)), into: &dataSet)
        element(0x0028, 0x0010, "US", us(rows), into: &dataSet)
        element(0x0028, 0x0011, "US", us(columns), into: &dataSet)
        for (tag, value) in [(0x0100, 16), (0x0101, 16), (0x0102, 15), (0x0103, 1)] {
            element(0x0028, UInt16(tag), "US", us(value), into: &dataSet)
        }
        let frameZero = (0..<(columns * rows)).map { Int16($0 % columns - 100) }
        var pixels = [UInt8](repeating: 0, count: columns * rows * frames * 2)
        for (i, v) in frameZero.enumerated() {
            pixels[2 * i] = UInt8(UInt16(bitPattern: v) & 0xFF)
            pixels[2 * i + 1] = UInt8(UInt16(bitPattern: v) >> 8)
        }
        element(0x7FE0, 0x0010, "OW", pixels, into: &dataSet)
        // Raw deflate (PS3.5 §A.5) = the gzip member without its 10-byte header and 8-byte trailer.
        let gzip = try gzipCompress(dataSet, path: input.path)
        file += gzip[10..<(gzip.count - 8)]
        try Data(file).write(to: input)
        XCTAssertLessThan(file.count, 1_000_000, "the input is a small file")

        let output = folder.appendingPathComponent("out.nii")
        for arguments in [["info", input.path], ["export", input.path, "-o", output.path, "--window", "stored"]] {
            let run = try runMeasured(binary, arguments, in: folder)
            XCTAssertEqual(run.status, 0, run.stderr)
            print("\(arguments[0]) big.dcm: peak \(run.peakMB) MB")
            XCTAssertLessThan(run.peakMB, 100, "\(arguments.joined(separator: " ")) peaked at \(run.peakMB) MB")
        }
        // Stored values come through exactly (as int16; the ramp does not change down a column,
        // so the row order of the slice does not matter here).
        let handle = try FileHandle(forReadingFrom: output)
        defer { try? handle.close() }
        let head = try handle.read(upToCount: 352 + columns * rows * 2) ?? Data()
        XCTAssertEqual(head.count, 352 + columns * rows * 2)
        let voxels = stride(from: 352, to: head.count, by: 2).map { Int16(bitPattern: UInt16(head[$0]) | UInt16(head[$0 + 1]) << 8) }
        XCTAssertEqual(voxels, frameZero)
        let outputSize = try FileManager.default.attributesOfItem(atPath: output.path)[.size] as! Int
        XCTAssertEqual(outputSize, 352 + columns * rows * frames * 2)
    }

    /// Issue 16 for `balance`: SMOTE on a class made of the 128 MB volume's 1,024 slices. The
    /// neighbour search keeps one feature vector per slice (86 x 86 blocks of 3 x 3 pixels here, 60 MB)
    /// and each sample's two slices are read back from the open volume when it is written; holding
    /// the class as images and pixel vectors, as before, took more than 1 GB.
    func testBalanceSMOTEOnA128MBVolumeStaysUnder250MB() throws {
        let binary = try requireBinary().path
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        let data = folder.appendingPathComponent("data"), out = folder.appendingPathComponent("balanced")
        let input = data.appendingPathComponent("rare").appendingPathComponent("big.nii.gz")
        try FileManager.default.createDirectory(at: input.deletingLastPathComponent(), withIntermediateDirectories: true)
        try makeVolume(at: input)
        let run = try runMeasured(binary, ["balance", "--data", data.path, "--out", out.path, "--method", "smote", "--target", "1040",
                                           "--progress", "none"], in: folder)
        XCTAssertEqual(run.status, 0, run.stderr)
        print("balance (rare: big.nii.gz) --method smote --target 1040: peak \(run.peakMB) MB")
        XCTAssertLessThan(run.peakMB, 250, "balance --method smote peaked at \(run.peakMB) MB")

        // Each sample is the interpolant of the two slices its manifest line names.
        let volume = try openImages([UInt8](Data(contentsOf: input)), name: input.path)
        let lines = try String(contentsOf: out.appendingPathComponent("manifest.jsonl"), encoding: .utf8).split(separator: "\n")
            .map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
            .filter { $0["source"] as? String == "synthetic" }
        XCTAssertEqual(lines.count, 16)
        for line in lines.prefix(4) {
            let parents = try XCTUnwrap(line["parents"] as? [String]), lambda = try XCTUnwrap(line["lambda"] as? Double)
            let slices = try parents.map { name in
                try volume.image(at: name.split(separator: "#").count == 2 ? Int(name.split(separator: "#")[1])! : 0)
            }
            let image = try readImage(at: out.appendingPathComponent(line["file"] as! String))
            XCTAssertEqual(image.width, Self.nx)
            var expected: [UInt16] = []
            for (a, b) in zip(slices[0].samples, slices[1].samples) {
                let x: Double = Double(a) + lambda * (Double(b) - Double(a))
                expected.append(UInt16(min(max(x.rounded(), 0), 65535)))
            }
            XCTAssertEqual(image.samples, expected, "\(line)")
        }
    }

    /// Slices made in batches across the storage planes (one pass per batch) equal a direct reading
    /// of the orientation rules in NIfTI.swift, for every axis and with each slice role (fixed axis,
    /// rows, columns) running along the storage planes' k axis in one of the two orientations.
    func testBatchedSlicesMatchTheOrientationRules() throws {
        let (nx, ny, nz) = (5, 4, 6)
        // sform rows (world R, A, S from voxel i, j, k): every axis moved, two flipped.
        let orientations: [[[Float]]] = [[[0, 0, -1], [1, 0, 0], [0, -1, 0]], [[0, -1, 0], [1, 0, 0], [0, 0, -1]]]
        for sform in orientations {
            var w = ByteWriter()
            w.i32(348)
            w.bytes += [UInt8](repeating: 0, count: 36)
            for d in [3, nx, ny, nz, 1, 1, 1, 1] { w.i16(Int16(d)) }
            w.bytes += [UInt8](repeating: 0, count: 14)
            w.i16(NIfTIDataType.int16.rawValue); w.i16(16)
            w.bytes += [UInt8](repeating: 0, count: 108 - w.bytes.count)
            w.f32(352); w.f32(1)
            w.bytes += [UInt8](repeating: 0, count: 252 - w.bytes.count)
            w.i16(0); w.i16(1)  // qform_code 0, sform_code 1
            w.bytes += [UInt8](repeating: 0, count: 280 - w.bytes.count)
            for row in sform { for v in row + [0] { w.f32(v) } }
            w.bytes += [UInt8](repeating: 0, count: 344 - w.bytes.count)
            w.bytes += [0x6E, 0x2B, 0x31, 0x00, 0, 0, 0, 0]
            for v in 0..<(nx * ny * nz) { w.i16(Int16(v - 50)) }
            let volume = try NIfTIVolume(bytes: w.bytes, path: "perm.nii")
            let (perm, flip) = volume.header.orientation
            let dims = [nx, ny, nz]
            for axis in SliceAxis.allCases {
                let fixed = volume.worldAxis(axis)
                let (col, row) = fixed == 2 ? (0, 1) : (fixed == 1 ? (0, 2) : (1, 2))
                let count = volume.sliceCount(axis)
                let (width, height) = (dims[perm[col]], dims[perm[row]])
                // Image pixel (x, y) of slice s is RAS (fixed = s, col = x, row = height-1-y).
                let expected = (0..<count).map { s in
                    (0..<(width * height)).map { p -> Float in
                        var ras = [0, 0, 0]
                        ras[fixed] = s; ras[col] = p % width; ras[row] = height - 1 - p / width
                        var voxel = [0, 0, 0]
                        for world in 0..<3 { voxel[perm[world]] = flip[world] ? dims[perm[world]] - 1 - ras[world] : ras[world] }
                        return Float(voxel[0] + nx * (voxel[1] + ny * voxel[2]) - 50)
                    }
                }
                let batched = try volume.extractRawSlices(axis: axis, indices: Array(0..<count), volume: 0, cursor: NIfTIVolume.PlaneCursor(volume))
                    .map { volume.frame($0, axis: axis).values }
                XCTAssertEqual(batched, expected, "\(axis), sform \(sform)")
                XCTAssertEqual(try volume.slice(axis, index: count - 1, volume: 0).values, expected[count - 1])
            }
        }
    }
}
