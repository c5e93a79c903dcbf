import Core
import Engine
import Evaluation
import Foundation
import Imaging
import Layers
import MedicalFormats
import Workflows
#if canImport(Glibc)
import Glibc
#endif

// MARK: - In-process fuzz driver for every reader of untrusted files (scripts/fuzz.sh)
//
// Input i of a run is a deterministic function of (--seed, i): a seed file chosen by i and one to
// eight mutations drawn from RandomStream(seed).split(i). So a crash or timeout is reproduced
// with `--dump i`, and a run killed at input i is resumed with `--start i+1`.
//
// Before each input its index is written to --state (one pwrite), so the driving script knows
// which input killed the process (sanitizer report, trap, signal). A watchdog thread stops the
// process with exit code 124 when one input runs longer than --timeout-ms, after saving it.
// The summary (one JSON line on stdout) counts inputs that decoded, were refused with a
// MedSynthError (the only allowed failure), or failed otherwise, plus peak RSS and the slowest input.

struct Options {
    var seedPaths: [String] = []
    var count = 10_000
    var start = 0
    var seed: UInt64 = 1
    var statePath: String?
    var outputFolder = "."
    var timeoutMilliseconds = 10_000
    var dump: Int?
}

func parseOptions() -> Options {
    var options = Options()
    var arguments = CommandLine.arguments.dropFirst()
    func value(_ name: String) -> String {
        guard let v = arguments.popFirst() else { fail("\(name) needs a value") }
        return v
    }
    while let argument = arguments.popFirst() {
        switch argument {
        case "--count": options.count = Int(value(argument)) ?? options.count
        case "--start": options.start = Int(value(argument)) ?? options.start
        case "--seed": options.seed = UInt64(value(argument)) ?? options.seed
        case "--state": options.statePath = value(argument)
        case "--out": options.outputFolder = value(argument)
        case "--timeout-ms": options.timeoutMilliseconds = Int(value(argument)) ?? options.timeoutMilliseconds
        case "--dump": options.dump = Int(value(argument))
        case "-h", "--help":
            print("usage: medsynth-fuzz [--count N] [--start I] [--seed S] [--state FILE] [--out DIR] [--timeout-ms T] [--dump I] SEED_FILE_OR_DIR...")
            exit(0)
        default: options.seedPaths.append(argument)
        }
    }
    return options
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("medsynth-fuzz: \(message)\n".utf8))
    exit(2)
}

/// Which reader a seed (and its mutants) goes to.
enum Reader: String, CaseIterable {
    case medical  // DICOM, NIfTI, PNG, JPEG through decodeImages (the dataset/export path)
    case safetensors
    case npy
    case manifest

    init(name: String) {
        let lower = name.lowercased()
        if lower.hasSuffix(".safetensors") { self = .safetensors }
        else if lower.hasSuffix(".npy") { self = .npy }
        else if lower.hasSuffix(".jsonl") { self = .manifest }
        else { self = .medical }
    }
}

struct Seed {
    let name: String
    let bytes: [UInt8]
    let reader: Reader
}

func loadSeeds(_ paths: [String]) -> [Seed] {
    var seeds: [Seed] = []
    let fm = FileManager.default
    for path in paths {
        var isFolder: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isFolder) else { fail("no such seed path \(path)") }
        let files: [String] = isFolder.boolValue
            ? (fm.enumerator(atPath: path)?.compactMap { $0 as? String }.map { path + "/" + $0 } ?? [])
            : [path]
        for file in files.sorted() {
            var folder: ObjCBool = false
            guard fm.fileExists(atPath: file, isDirectory: &folder), !folder.boolValue,
                  let data = fm.contents(atPath: file), !file.hasSuffix(".json"), !file.hasSuffix(".txt") else { continue }
            seeds.append(Seed(name: (file as NSString).lastPathComponent, bytes: [UInt8](data), reader: Reader(name: file)))
        }
    }
    return seeds
}

// MARK: Mutations

/// One to eight mutations (mostly one or two) of the kinds that break length-driven parsers: bit flips, special bytes,
/// special 16/32-bit values in either byte order, truncation, deletion, duplication, and splicing
/// a piece of another seed.
func mutate(_ input: [UInt8], other: [UInt8], _ stream: inout RandomStream) -> [UInt8] {
    var bytes = input
    // Mostly one or two mutations (deep paths stay reachable), sometimes up to eight.
    let mutations = 1 + (stream.int(below: 4) == 0 ? stream.int(below: 8) : stream.int(below: 2))
    for _ in 0..<mutations {
        if bytes.isEmpty { bytes = [UInt8(truncatingIfNeeded: stream.int(below: 256))]; continue }
        let at = stream.int(below: bytes.count)
        switch stream.int(below: 11) {
        case 10:
            // Replace a number written in ASCII (JSON values, DICOM IS/DS strings, NPY shapes) with
            // an extreme one, keeping the text around it intact.
            guard let digit = bytes[at...].firstIndex(where: { (0x30...0x39).contains($0) }) else { break }
            var end = digit
            while end < bytes.count, (0x30...0x39).contains(bytes[end]) || bytes[end] == 0x2E { end += 1 }
            let extremes = ["0", "-1", "2147483648", "4294967296", "9223372036854775807", "1000000000000", "1e308",
                            "-9223372036854775808", "65535", "1e-300", "NaN", String(stream.nextUInt64())]
            bytes.replaceSubrange(digit..<end, with: Array(extremes[stream.int(below: extremes.count)].utf8))
        case 0:
            bytes[at] ^= UInt8(1 << stream.int(below: 8))
        case 1:
            bytes[at] = [0x00, 0xFF, 0x7F, 0x80, 0x01, 0xFE][stream.int(below: 6)]
        case 2, 3:
            let words: [UInt32] = [0xFFFF_FFFF, 0x7FFF_FFFF, 0x8000_0000, 0x0000_FFFF, 0x0001_0000, 0xFFFF_FFFE, 0, 1, 0x7FFF, 0x8000, 0xFFFF, 0x4000_0000]
            let v = words[stream.int(below: words.count)]
            let width = stream.int(below: 2) == 0 ? 2 : 4
            let big = stream.int(below: 2) == 0
            for k in 0..<width where at + k < bytes.count {
                let shift = big ? 8 * (width - 1 - k) : 8 * k
                bytes[at + k] = UInt8(truncatingIfNeeded: v >> UInt32(shift))
            }
        case 4:
            bytes.removeSubrange(at...)
        case 5:
            let end = min(bytes.count, at + 1 + stream.int(below: 64))
            bytes.removeSubrange(at..<end)
        case 6:
            let end = min(bytes.count, at + 1 + stream.int(below: 64))
            bytes.insert(contentsOf: Array(bytes[at..<end]), at: at)
        case 7:
            if !other.isEmpty {
                let from = stream.int(below: other.count)
                let end = min(other.count, from + 1 + stream.int(below: 128))
                let replaceEnd = min(bytes.count, at + (end - from))
                bytes.replaceSubrange(at..<replaceEnd, with: other[from..<end])
            }
        case 8:
            // Random ASCII digits (JSON numbers, DICOM IS/DS strings, NPY shapes).
            let digits = Array(String(stream.nextUInt64() >> UInt64(stream.int(below: 64))).utf8)
            let end = min(bytes.count, at + digits.count)
            bytes.replaceSubrange(at..<end, with: digits)
        default:
            bytes[at] = UInt8(truncatingIfNeeded: stream.int(below: 256))
        }
    }
    return bytes
}

func input(_ index: Int, seeds: [Seed], seed: UInt64) -> (Seed, [UInt8], RandomStream) {
    var stream = RandomStream(seed: seed).split(UInt64(index))
    let chosen = seeds[stream.int(below: seeds.count)]
    let other = seeds[stream.int(below: seeds.count)]
    var bytes = mutate(chosen.bytes, other: other.bytes, &stream)
    // Uncompressed NIfTI mutants are sometimes gzipped, so the bounded two-step inflate sees them.
    if chosen.name.hasSuffix(".nii") && stream.int(below: 3) == 0, let zipped = try? gzipCompress(bytes, path: chosen.name) {
        bytes = zipped
    }
    return (chosen, bytes, stream)
}

// MARK: Running one input

let scratch: URL = {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("medsynth-fuzz-\(getpid())")
    try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}()

enum Outcome { case decoded, rejected, unexpected(String) }

func run(_ seed: Seed, _ bytes: [UInt8], _ stream: inout RandomStream) -> Outcome {
    do {
        switch seed.reader {
        case .medical:
            let windows: [MedicalWindow] = [.fileDefault, .stored, .fullRange, .preset(.lung)]
            var options = MedicalReadOptions(window: windows[stream.int(below: windows.count)],
                                             bitDepth: [nil, 8, 16][stream.int(below: 3)],
                                             axis: SliceAxis.allCases[stream.int(below: 3)])
            // Small limits keep each input cheap; the limit checks themselves are what is fuzzed.
            options.maxDecompressedBytes = 1 << 22
            options.maxPixels = 1 << 22
            options.maxImagePixels = 1 << 20
            let name = bytes.starts(with: [0x1F, 0x8B]) && seed.name.hasSuffix(".nii") ? seed.name + ".gz" : seed.name
            let images = try decodeImages(bytes, name: name, options: options)
            for image in images where image.samples.count != image.width * image.height * image.channels {
                return .unexpected("image of \(image.samples.count) samples for \(image.width)x\(image.height)x\(image.channels)")
            }
        case .safetensors:
            _ = try decodeSafetensors(Data(bytes), name: seed.name)
        case .npy:
            let url = scratch.appendingPathComponent("input.npy")
            try Data(bytes).write(to: url)
            _ = try readNPY(at: url)
        case .manifest:
            // A one-shard run: the mutated manifest is shard 0 of 1, beside the files it names.
            let folder = scratch.appendingPathComponent("manifest")
            try? FileManager.default.removeItem(at: folder)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            for name in ["sample_000000.png", "sample_000001.png", "sample_000002.png"] {
                FileManager.default.createFile(atPath: folder.appendingPathComponent(name).path, contents: Data())
            }
            try Data(bytes).write(to: folder.appendingPathComponent("manifest.shard-0-of-1.jsonl"))
            _ = try mergeManifests(in: folder, expect: stream.int(below: 2) == 0 ? nil : 3)
        }
        return .decoded
    } catch is MedSynthError {
        return .rejected
    } catch {
        return .unexpected("\(type(of: error)): \(error)")
    }
}

// MARK: Watchdog

/// Index and start time of the input being run, read by the watchdog thread.
final class Current: @unchecked Sendable {
    var index = -1
    var startNanoseconds: UInt64 = 0
    var bytes: [UInt8] = []
    var name = ""
    let lock = NSLock()
}

func nowNanoseconds() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

func save(_ bytes: [UInt8], index: Int, name: String, kind: String, folder: String) -> String {
    let path = "\(folder)/\(kind)-\(index)-\(name)"
    FileManager.default.createFile(atPath: path, contents: Data(bytes))
    return path
}

func peakRSSKilobytes() -> Int {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    return Int(usage.ru_maxrss)
}

// MARK: Main

let options = parseOptions()
let seeds = loadSeeds(options.seedPaths)
guard !seeds.isEmpty else { fail("no seed files") }
try? FileManager.default.createDirectory(atPath: options.outputFolder, withIntermediateDirectories: true)

if let index = options.dump {
    let (seed, bytes, _) = input(index, seeds: seeds, seed: options.seed)
    print(save(bytes, index: index, name: seed.name, kind: "input", folder: options.outputFolder))
    exit(0)
}

let stateDescriptor: Int32 = options.statePath.map { open($0, O_WRONLY | O_CREAT | O_TRUNC, 0o644) } ?? -1
let current = Current()
let timeoutNanoseconds = UInt64(options.timeoutMilliseconds) * 1_000_000
let watchdog = Thread {
    while true {
        usleep(50_000)
        current.lock.lock()
        let (index, start, name) = (current.index, current.startNanoseconds, current.name)
        current.lock.unlock()
        if index >= 0 && nowNanoseconds() - start > timeoutNanoseconds {
            current.lock.lock()
            let path = save(current.bytes, index: index, name: name, kind: "timeout", folder: options.outputFolder)
            current.lock.unlock()
            FileHandle.standardError.write(Data("TIMEOUT input \(index) (\(name)) ran over \(options.timeoutMilliseconds) ms; saved \(path)\n".utf8))
            _exit(124)
        }
    }
}
watchdog.start()

var counts: [String: [String: Int]] = [:]
for reader in Reader.allCases { counts[reader.rawValue] = ["decoded": 0, "rejected": 0, "unexpected": 0] }
var unexpectedInputs: [String] = []
var slowest = (index: -1, milliseconds: 0.0, name: "")
var rssBefore = peakRSSKilobytes()
var rssGrowth: [(index: Int, name: String, kilobytes: Int)] = []
let runStart = Date()
for index in options.start..<(options.start + options.count) {
    var (seed, bytes, stream) = input(index, seeds: seeds, seed: options.seed)
    if stateDescriptor >= 0 {
        var text = Array("\(index)\n".utf8)
        text += [UInt8](repeating: 0x20, count: max(0, 24 - text.count))
        _ = text.withUnsafeBytes { pwrite(stateDescriptor, $0.baseAddress, $0.count, 0) }
    }
    current.lock.lock()
    current.index = index
    current.bytes = bytes
    current.name = seed.name
    current.startNanoseconds = nowNanoseconds()
    current.lock.unlock()
    let outcome = run(seed, bytes, &stream)
    let elapsed = Double(nowNanoseconds() - current.startNanoseconds) / 1e6
    current.lock.lock()
    current.index = -1
    current.lock.unlock()
    if elapsed > slowest.milliseconds { slowest = (index, elapsed, seed.name) }
    switch outcome {
    case .decoded: counts[seed.reader.rawValue]!["decoded"]! += 1
    case .rejected: counts[seed.reader.rawValue]!["rejected"]! += 1
    case .unexpected(let message):
        counts[seed.reader.rawValue]!["unexpected"]! += 1
        let path = save(bytes, index: index, name: seed.name, kind: "unexpected", folder: options.outputFolder)
        unexpectedInputs.append("\(index) \(seed.name): \(message) (\(path))")
    }
    let rss = peakRSSKilobytes()
    if rss > rssBefore + 65_536 {  // note inputs that raise the peak by more than 64 MB
        rssGrowth.append((index, seed.name, rss))
        rssBefore = rss
    }
}
let summary: [String: Any] = [
    "start": options.start, "count": options.count, "seed": options.seed, "seeds": seeds.count,
    "seconds": Date().timeIntervalSince(runStart),
    "counts": counts,
    "unexpected": unexpectedInputs,
    "peak_rss_kb": peakRSSKilobytes(),
    "peak_rss_steps": rssGrowth.map { "\($0.index) \($0.name): \($0.kilobytes) kB" },
    "slowest": ["index": slowest.index, "ms": slowest.milliseconds, "seed": slowest.name],
]
let json = try JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys])
print(String(decoding: json, as: UTF8.self))
try? FileManager.default.removeItem(at: scratch)
exit(unexpectedInputs.isEmpty ? 0 : 1)
