import Dispatch
import Core
import Foundation
#if canImport(Glibc)
import Glibc
#endif

// Image folders as datasets. Layout rules (the same for training and for `medsynth info`):
// - a folder whose only contents are files is one class named after the folder;
// - a folder with subfolders: each non-hidden subfolder is a class (sorted by name, so class
//   indices are stable), holding the images anywhere below it; files lying directly next to
//   the class folders belong to no class and are reported as skipped;
// - hidden files and folders (leading ".") are ignored;
// - a file is an image if its first bytes are a PNG or JPEG signature, "DICM" at offset 128
//   (DICOM Part 10), or it is NIfTI-1 (.nii / .nii.gz name, or "n+1" at 344); other files are skipped and
//   reported, so a DICOM folder with stray files still loads. A multi-frame DICOM file or a NIfTI
//   volume gives one entry per frame or slice;
// - only regular files are read: FIFOs, sockets and devices are skipped with a note (opening a
//   FIFO would block); links are followed, but a folder or file reached twice is skipped with a
//   note (see `FolderWalker`), so a link to `..` neither loops nor counts files again.

import MedicalFormats

/// One image of a dataset and its class; `frame` picks a frame or slice of a DICOM/NIfTI file.
public struct DatasetEntry: Equatable, Sendable {
    public let url: URL
    public let classIndex: Int
    public let frame: Int

    public init(url: URL, classIndex: Int, frame: Int = 0) {
        self.url = url; self.classIndex = classIndex; self.frame = frame
    }
}

/// A file that a dataset scan did not use, and why.
public struct SkippedFile: Equatable, Sendable {
    public let url: URL
    public let reason: String

    public init(url: URL, reason: String) { self.url = url; self.reason = reason }
}

// MARK: - Scanning

/// The classes and files of a folder tree, by the rules above, without decoding any image.
struct FolderScan {
    var classNames: [String] = []
    var entries: [DatasetEntry] = []
    var skipped: [SkippedFile] = []

    init(root: URL) throws {
        let rootPath = root.standardizedFileURL.path
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: rootPath, isDirectory: &isFolder) else {
            throw MedSynthError(file: rootPath, "no such folder")
        }
        guard isFolder.boolValue else { throw MedSynthError(file: rootPath, "is a file, not a folder") }
        var walker = FolderWalker()
        let top = URL(fileURLWithPath: rootPath, isDirectory: true)
        walker.enter(top)
        let (files, folders) = try walker.listVisible(top)
        if folders.isEmpty {
            classNames = [URL(fileURLWithPath: rootPath).lastPathComponent]
            add(files, classIndex: 0)
        } else {
            classNames = folders.map(\.lastPathComponent)
            for file in files { skipped.append(SkippedFile(url: file, reason: "not inside a class folder")) }
            for (index, folder) in folders.enumerated() {
                add(try walker.allFiles(below: folder), classIndex: index)
            }
        }
        skipped += walker.skipped
        skipped.sort { $0.url.path < $1.url.path }
    }

    private mutating func add(_ files: [URL], classIndex: Int) {
        for file in files {
            if let reason = FolderScan.notAnImageReason(file) {
                skipped.append(SkippedFile(url: file, reason: reason))
            } else {
                entries.append(DatasetEntry(url: file, classIndex: classIndex))
            }
        }
    }

    /// nil for a PNG/JPEG/DICOM/NIfTI file; otherwise why it is not one. Reads at most 348 bytes
    /// (a NIfTI-1 header: its magic is at 344) and never blocks (a FIFO or device is refused unread).
    static func notAnImageReason(_ url: URL) -> String? {
        let head: [UInt8]
        do { head = try readFileHead(url, count: 348) } catch let error as MedSynthError {
            let prefix = url.path + ": "
            return error.message.hasPrefix(prefix) ? String(error.message.dropFirst(prefix.count)) : error.message
        } catch { return "cannot open file" }
        if head.isEmpty { return "file is empty (0 bytes)" }
        if ImageFormat.sniff(head.prefix(8)) != nil || isMedicalFile(Data(head), name: url.lastPathComponent) { return nil }
        return "not a PNG, JPEG, DICOM or NIfTI image"
    }

    static func isMedicalFile(_ head: Data, name: String) -> Bool {
        medicalFileKind(bytes: [UInt8](head), name: name) != .image
    }
}

/// Walks folder trees safely: only regular files and folders are listed (FIFOs, sockets and
/// devices are skipped with a note, so nothing blocks on open); symbolic links are followed, but
/// a folder or file reached a second time (a link to `..`, to a sibling, or a hard link) is
/// skipped with a note, so link cycles end and no file counts twice. Identity is (device, inode).
struct FolderWalker {
    /// Entries not listed, with the reason.
    private(set) var skipped: [SkippedFile] = []
    private var seenFolders: Set<FileIdentity> = []
    private var seenFiles: [FileIdentity: URL] = [:]

    struct FileIdentity: Hashable {
        let device: UInt64
        let inode: UInt64
    }

    /// Marks `folder` as visited (the root of a walk), so links back to it are not followed.
    mutating func enter(_ folder: URL) {
        var info = stat()
        if stat(folder.path, &info) == 0 { seenFolders.insert(FileIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))) }
    }

    /// Non-hidden files and folders directly in `folder`, each sorted by name; folders returned
    /// are marked visited.
    mutating func listVisible(_ folder: URL) throws -> (files: [URL], folders: [URL]) {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: folder.path) } catch {
            throw MedSynthError(file: folder.path, "cannot list folder")
        }
        // Real entries before links, so a link (not the file it points to) is the one reported twice.
        var found: [(url: URL, isLink: Bool, info: stat)] = []
        for name in names.sorted() where !name.hasPrefix(".") {
            let url = folder.appendingPathComponent(name)
            var link = stat(), info = stat()
            guard lstat(url.path, &link) == 0 else { continue }
            let isLink = (link.st_mode & S_IFMT) == S_IFLNK
            guard stat(url.path, &info) == 0 else {
                skipped.append(SkippedFile(url: url, reason: isLink ? "broken symbolic link" : "cannot read file information"))
                continue
            }
            found.append((url, isLink, info))
        }
        var keep = Set<URL>()
        for (url, _, info) in found.filter({ !$0.isLink }) + found.filter(\.isLink) {
            let identity = FileIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
            switch info.st_mode & S_IFMT {
            case S_IFDIR:
                if seenFolders.contains(identity) {
                    skipped.append(SkippedFile(url: url, reason: "symbolic link to a folder already scanned (a cycle or a duplicate); not followed"))
                    continue
                }
                seenFolders.insert(identity)
                keep.insert(url)
            case S_IFREG:
                if let first = seenFiles[identity] {
                    skipped.append(SkippedFile(url: url, reason: "same file as \(first.path) (a link); counted once"))
                    continue
                }
                seenFiles[identity] = url
                keep.insert(url)
            default:
                skipped.append(SkippedFile(url: url, reason: "not a regular file (\(fileTypeName(info.st_mode))); skipped"))
            }
        }
        var files: [URL] = [], folders: [URL] = []
        for (url, _, info) in found where keep.contains(url) {
            if (info.st_mode & S_IFMT) == S_IFDIR { folders.append(url) } else { files.append(url) }
        }
        return (files, folders)
    }

    /// Every non-hidden regular file below `folder`, depth first, in name order.
    mutating func allFiles(below folder: URL) throws -> [URL] {
        let (files, folders) = try listVisible(folder)
        var result = files
        for sub in folders { result += try allFiles(below: sub) }
        return result
    }
}

/// A short name for a non-regular file type.
func fileTypeName(_ mode: mode_t) -> String {
    switch mode & S_IFMT {
    case S_IFIFO: return "a FIFO"
    case S_IFSOCK: return "a socket"
    case S_IFCHR: return "a character device"
    case S_IFBLK: return "a block device"
    case S_IFDIR: return "a folder"
    default: return "special file"
    }
}

/// The first `count` bytes of a regular file. Opens without blocking and checks the type on the
/// open descriptor, so a FIFO, socket or device (even one swapped in after a scan) is refused
/// instead of hanging.
func readFileHead(_ url: URL, count: Int) throws -> [UInt8] {
    let fd = open(url.path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
    guard fd >= 0 else { throw MedSynthError(file: url.path, "cannot read: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0 else { throw MedSynthError(file: url.path, "cannot read file information") }
    guard (info.st_mode & S_IFMT) == S_IFREG else {
        throw MedSynthError(file: url.path, "not a regular file (\(fileTypeName(info.st_mode)))")
    }
    var bytes = [UInt8](repeating: 0, count: count)
    var got = 0
    while got < count {
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + got, count - got) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        got += n
    }
    return Array(bytes.prefix(got))
}

// MARK: - Dataset

/// The images of a folder tree (by the rules at the top of this file), listed without decoding
/// them: DICOM and NIfTI files are opened, so a bad one fails here as it would in
/// `ImageFolderDataset`, to count their frames or slices (one entry each), but no image is made.
/// What `balance` plans with: it reads the images it needs one at a time.
public struct ImageFolderListing: Sendable {
    public let root: URL
    /// Class names, sorted; `entries[i].classIndex` indexes this.
    public let classNames: [String]
    /// Images in class order, then name order; the frames of a file in order.
    public let entries: [DatasetEntry]
    /// Files not used (not images, empty, outside class folders), with the reason.
    public let skipped: [SkippedFile]

    /// Scans `root`. Throws if the folder is missing or holds no images, or a DICOM/NIfTI file is bad.
    public init(root: URL, medicalOptions: MedicalReadOptions = .init()) throws {
        try self.init(root: root, medicalOptions: medicalOptions) { _, _ in }
    }

    /// `visit(first, images)` gets each opened DICOM/NIfTI file and the entry index of its first image.
    init(root: URL, medicalOptions: MedicalReadOptions, visit: (_ first: Int, _ images: MedicalImages) throws -> Void) throws {
        let scan = try FolderScan(root: root)
        guard !scan.entries.isEmpty else {
            let detail = scan.skipped.isEmpty ? "it has no files" : "\(scan.skipped.count) file(s) skipped, none is a PNG, JPEG, DICOM or NIfTI image"
            throw MedSynthError(file: root.path, "empty dataset: no images found (\(detail))")
        }
        var expanded: [DatasetEntry] = []
        for entry in scan.entries {
            let head = Data((try? readFileHead(entry.url, count: 348)) ?? [])
            guard FolderScan.isMedicalFile(head, name: entry.url.lastPathComponent) else { expanded.append(entry); continue }
            let frames = try openImages(readFileBytes(at: entry.url), name: entry.url.path, options: medicalOptions)
            try visit(expanded.count, frames)
            for frame in 0..<frames.count { expanded.append(DatasetEntry(url: entry.url, classIndex: entry.classIndex, frame: frame)) }
        }
        self.root = root
        self.classNames = scan.classNames
        self.entries = expanded
        self.skipped = scan.skipped
    }

    /// Number of images in each class, indexed like `classNames`.
    public var countsPerClass: [Int] {
        var counts = [Int](repeating: 0, count: classNames.count)
        for entry in entries { counts[entry.classIndex] += 1 }
        return counts
    }
}

/// A folder tree of PNG/JPEG images as a class-labelled dataset of square Float tensors.
/// Images are decoded on first use, centre-cropped to a square, resized to `imageSize` and kept
/// in memory (`imageSize² · channels · 2` bytes each), so later epochs do not touch the disk.
public final class ImageFolderDataset: @unchecked Sendable {
    public let root: URL
    public let imageSize: Int
    public let channels: Int
    public let maxSide: Int
    /// Class names, sorted; `entries[i].classIndex` indexes this.
    public let classNames: [String]
    /// Images in class order, then name order.
    public let entries: [DatasetEntry]
    /// Files not used (not images, empty, outside class folders), with the reason.
    public let skipped: [SkippedFile]

    private let lock = NSLock()
    private var cache: [Int: Image] = [:]
    /// Frames and slices of DICOM/NIfTI files, decoded at scan time and already cropped and resized
    /// (a volume's slices at full size could be gigabytes).
    private let decodedMedical: [Int: Image]

    /// Scans `root` (no decoding yet). Throws if the folder is missing or holds no images.
    /// - Parameters:
    ///   - imageSize: side of the square tensors returned.
    ///   - channels: 1 (gray; RGB files become BT.601 luma) or 3 (RGB; gray files replicated).
    ///   - maxSide: images with a larger side are refused when decoded.
    public init(root: URL, imageSize: Int, channels: Int, maxSide: Int = 16384, medicalOptions: MedicalReadOptions = .init()) throws {
        guard imageSize >= 1 else { throw MedSynthError(file: root.path, "image size must be positive, got \(imageSize)") }
        guard channels == 1 || channels == 3 else {
            throw MedSynthError(file: root.path, "channels must be 1 or 3, got \(channels)")
        }
        // DICOM and NIfTI files are decoded now: one file may hold many frames or slices.
        var medicalImages: [Int: Image] = [:]
        let listing = try ImageFolderListing(root: root, medicalOptions: medicalOptions) { first, frames in
            var index = first
            try frames.forEach { image in
                medicalImages[index] = ImageFolderDataset.prepare(image, imageSize: imageSize, channels: channels)
                index += 1
            }
        }
        self.root = root
        self.imageSize = imageSize
        self.channels = channels
        self.maxSide = maxSide
        self.classNames = listing.classNames
        self.entries = listing.entries
        self.skipped = listing.skipped
        self.decodedMedical = medicalImages
    }

    public var count: Int { entries.count }

    /// Number of images in each class, indexed like `classNames`.
    public var countsPerClass: [Int] {
        var counts = [Int](repeating: 0, count: classNames.count)
        for entry in entries { counts[entry.classIndex] += 1 }
        return counts
    }

    /// Floats per item: channels · imageSize · imageSize.
    public var itemCount: Int { channels * imageSize * imageSize }

    /// The decoded, cropped, resized image at `index` (cached after the first load).
    public func image(at index: Int) throws -> Image {
        precondition(index >= 0 && index < entries.count, "ImageFolderDataset: index \(index) out of 0..<\(entries.count)")
        lock.lock()
        let cached = cache[index]
        lock.unlock()
        if let cached { return cached }
        let prepared = try decodedMedical[index]
            ?? ImageFolderDataset.prepare(readImage(at: entries[index].url, maxSide: maxSide), imageSize: imageSize, channels: channels)
        lock.lock()
        cache[index] = prepared
        lock.unlock()
        return prepared
    }

    /// A decoded image as the dataset serves it: alpha dropped, centre-cropped and resized to
    /// `imageSize`, then `channels` channels.
    static func prepare(_ decoded: Image, imageSize: Int, channels: Int) -> Image {
        decoded.converted(channels: decoded.hasAlpha ? decoded.colorChannels : decoded.channels)
            .squareResized(imageSize)
            .converted(channels: channels)
    }

    /// Decodes (cached after the first load) and returns CHW Float in [-1,1] at imageSize x imageSize.
    public func tensorData(at index: Int) throws -> [Float] {
        try image(at: index).toFloatCHW(channels: channels)
    }

    /// Fills `out` (count = batch * channels * size * size, NCHW) with the given entries; parallel over items.
    /// Throws the first failing file's error (by position in `indices`).
    public func loadBatch(indices: [Int], into out: UnsafeMutableBufferPointer<Float>) throws {
        let item = itemCount
        guard out.count == indices.count * item else {
            throw MedSynthError("loadBatch: buffer holds \(out.count) floats, \(indices.count) items need \(indices.count * item)")
        }
        var errors = [Error?](repeating: nil, count: indices.count)
        let workers = min(indices.count, max(1, AvailableProcessors.count))
        errors.withUnsafeMutableBufferPointer { errors in
            DispatchQueue.concurrentPerform(iterations: workers) { worker in
                // Each worker owns disjoint items, so writes to `out` and `errors` never overlap.
                var position = worker
                while position < indices.count {
                    do {
                        let values = try tensorData(at: indices[position])
                        let base = out.baseAddress! + position * item
                        values.withUnsafeBufferPointer { base.update(from: $0.baseAddress!, count: item) }
                    } catch {
                        errors[position] = error
                    }
                    position += workers
                }
            }
        }
        if let first = errors.compactMap({ $0 }).first { throw first }
    }
}
