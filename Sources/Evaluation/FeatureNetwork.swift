import Foundation
import Engine
import Layers
import Imaging

// MARK: - The fixed feature network
//
// medsynth-random-cnn-v1 (documented so numbers compare across runs, machines and datasets):
//   input   one 64×64 grayscale image in [−1, 1]: RGB is converted to BT.601 luma, other sizes are
//           centre-cropped to a square and resized (area when shrinking, bilinear when enlarging)
//   layers  Conv 3×3 stride 2 pad 1: 1→32, 32→64, 64→128, 128→256 (64 → 32 → 16 → 8 → 4 px),
//           each followed by LeakyReLU(0.2); no normalisation, biases 0
//   weights He-normal N(0, 2/fan_in) from RandomStream(seed: 20_201_111), drawn layer by layer
//   output  512 features: global average then global max over the 4×4 map of the last layer
// Random-weight embeddings are a documented choice for non-ImageNet domains (Naeem et al. 2020).
// `FeatureNetwork(weights:)` loads a user's trained encoder with the same layout instead
// (tensors conv0.weight … conv3.weight, and optional biases).

public final class FeatureNetwork: Module {
    public static let identifier = "medsynth-random-cnn-v1"
    public static let inputSize = 64
    public static let seed: UInt64 = 20_201_111
    let convs: [Conv2d]
    public private(set) var source: String = FeatureNetwork.identifier

    public init() {
        var stream = RandomStream(seed: FeatureNetwork.seed)
        let widths = [1, 32, 64, 128, 256]
        convs = (0..<4).map { i in
            let conv = Conv2d(widths[i], widths[i + 1], kernel: 3, stride: 2, padding: 1, stream: &stream)
            let fanIn = Float(widths[i] * 9)
            conv.weight.data.withUnsafeMutableBufferPointer { stream.fillNormal($0, std: (2 / fanIn).squareRoot()) }
            conv.bias!.data = [Float](repeating: 0, count: widths[i + 1])
            return conv
        }
    }

    /// The same layout with weights from a safetensors file (a trained encoder).
    public convenience init(weights url: URL) throws {
        self.init()
        let file = try readSafetensors(at: url)
        try load(file.tensors, source: url.path)
        source = url.path
    }

    public func namedTensors() -> [NamedTensor] { gather(convs.enumerated().map { ("conv\($0.offset)", $0.element as Module) }) }

    public var dimension: Int { 2 * convs.last!.weight.shape[0] }

    /// Features of N×1×64×64 images.
    public func features(_ x: Tensor) -> [[Double]] {
        withNoGrad {
            var h = x
            for conv in convs { h = leakyRelu(conv(h), slope: 0.2) }
            let n = h.shape[0], c = h.shape[1], plane = h.shape[2] * h.shape[3]
            return (0..<n).map { i in
                var out = [Double](repeating: 0, count: 2 * c)
                for ch in 0..<c {
                    let base = (i * c + ch) * plane
                    var s: Float = 0, m = -Float.infinity
                    for j in base..<base + plane { s += h.data[j]; m = max(m, h.data[j]) }
                    out[ch] = Double(s / Float(plane)); out[c + ch] = Double(m)
                }
                return out
            }
        }
    }

    /// The network's input for an image: gray, square, 64×64, CHW floats in [−1, 1].
    public static func prepare(_ image: Image) -> [Float] {
        image.converted(channels: image.hasAlpha ? image.colorChannels : image.channels)
            .squareResized(inputSize).toFloatCHW(channels: 1)
    }
}

/// The images of a folder (classes = subfolders), prepared for the feature network.
public struct ImageSet {
    public let root: URL
    public let classNames: [String]
    public let labels: [Int]
    public let names: [String]
    /// 64×64 gray images in [−1, 1].
    public let pixels: [[Float]]
    public let channels: Set<Int>

    public init(root: URL) throws {
        let dataset = try ImageFolderDataset(root: root, imageSize: FeatureNetwork.inputSize, channels: 1)
        var pixels: [[Float]] = [], channels = Set<Int>()
        for (i, entry) in dataset.entries.enumerated() {
            // Colour or gray as stored (alpha aside); DICOM/NIfTI frames count as gray.
            if let bytes = try? readFileBytes(at: entry.url), let header = try? probeImage(bytes, name: entry.url.path) {
                channels.insert(header.channels >= 3 ? 3 : 1)
            } else {
                channels.insert(1)
            }
            pixels.append(try dataset.tensorData(at: i))
        }
        self.root = root
        self.classNames = dataset.classNames
        self.labels = dataset.entries.map(\.classIndex)
        self.names = dataset.entries.map { $0.url.lastPathComponent + ($0.frame > 0 ? "#\($0.frame)" : "") }
        self.pixels = pixels
        self.channels = channels
    }

    public var count: Int { pixels.count }

    public func features(_ network: FeatureNetwork, batchSize: Int = 64, progress: (Int) -> Void = { _ in }) -> Matrix {
        var rows: [Double] = []
        var start = 0
        while start < pixels.count {
            let end = min(pixels.count, start + batchSize)
            let batch = Tensor(shape: [end - start, 1, FeatureNetwork.inputSize, FeatureNetwork.inputSize], data: Array(pixels[start..<end].joined()))
            for f in network.features(batch) { rows += f }
            start = end
            progress(start)
        }
        return Matrix(rows: pixels.count, columns: network.dimension, values: rows)
    }
}
