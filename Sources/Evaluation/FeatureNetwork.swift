import Foundation
import Core
import Engine
import Layers
import Imaging

// MARK: - The fixed feature network

/// medsynth-random-cnn-v1, the feature network behind every distance in `evaluate`. It is fixed
/// and documented so that numbers compare across runs, machines and datasets:
///
/// - **Input**: one 64×64 grayscale image in [−1, 1] (sample / max · 2 − 1). RGB is converted
///   to BT.601 luma (0.299 R + 0.587 G + 0.114 B), alpha is dropped, 16-bit images keep their
///   full range; other sizes are centre-cropped to a square and resized to 64×64 (area
///   averaging when shrinking, bilinear when enlarging). DICOM/NIfTI frames go in the same way.
/// - **Layers**: four 3×3 convolutions, stride 2, padding 1: 1→32, 32→64, 64→128, 128→256
///   channels (64 → 32 → 16 → 8 → 4 pixels), each followed by LeakyReLU(0.2); no normalisation.
/// - **Weights**: layer i's weight (PyTorch layout OC×IC×3×3, row-major) holds successive
///   `normal()` draws of `RandomStream(seed: 20_201_111).split(i)` times √(2 / (IC·9))
///   (He-normal); biases are 0.
/// - **Output**: 512 features per image: the global average over the final 4×4 map of each of
///   the 256 channels, then the global maximum of each channel.
///
/// Random-weight embeddings are a documented choice for non-ImageNet domains (Naeem et al.
/// 2020, Section 5): no ImageNet network sees medical images the way it sees photographs.
/// `FeatureNetwork(weights:)` loads a trained encoder of the same layout instead (safetensors
/// tensors `conv0.weight`, `conv0.bias` … `conv3.weight`, `conv3.bias`).
public final class FeatureNetwork: Module {
    public static let identifier = "medsynth-random-cnn-v1"
    public static let inputSize = 64
    public static let seed: UInt64 = 20_201_111
    public static let widths = [1, 32, 64, 128, 256]
    let convs: [Conv2d]
    /// The identifier, or the path of the loaded weights.
    public private(set) var source: String = FeatureNetwork.identifier

    public init() {
        let widths = FeatureNetwork.widths
        // Conv2d draws PyTorch's default initialisation from this stream; it is overwritten below.
        var construction = RandomStream(seed: FeatureNetwork.seed).split(.featureNetworkConstruction)
        convs = (0..<widths.count - 1).map { i in
            let conv = Conv2d(widths[i], widths[i + 1], kernel: 3, stride: 2, padding: 1, stream: &construction)
            var stream = RandomStream(seed: FeatureNetwork.seed).split(UInt64(i))
            let std = (2 / Float(widths[i] * 9)).squareRoot()
            conv.weight.data.withUnsafeMutableBufferPointer { stream.fillNormal($0, std: std) }
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

    /// Features of N×1×64×64 images: N rows of `dimension` values, flattened (row-major).
    public func features(_ x: Tensor) -> [Double] {
        withNoGrad {
            var h = x
            for conv in convs {
                h = conv(h)
                leakyReluInPlace(h, slope: 0.2)
            }
            let n = h.shape[0], c = h.shape[1], plane = h.shape[2] * h.shape[3]
            var out = [Double](repeating: 0, count: n * 2 * c)
            h.data.withUnsafeBufferPointer { hp in
                out.withUnsafeMutableBufferPointer { op in
                    for i in 0..<n {
                        for ch in 0..<c {
                            let base = hp.baseAddress! + (i * c + ch) * plane
                            var s: Float = 0, m = -Float.infinity
                            for j in 0..<plane { s += base[j]; m = max(m, base[j]) }
                            // Average-pooled channels first, then max-pooled ones.
                            op[i * 2 * c + ch] = Double(s / Float(plane))
                            op[i * 2 * c + c + ch] = Double(m)
                        }
                    }
                }
            }
            return out
        }
    }

    /// LeakyReLU on an inference activation nobody else holds, without a second buffer:
    /// max(x, slope·x) for 0 < slope < 1, eight lanes at a time.
    func leakyReluInPlace(_ t: Tensor, slope: Float) {
        t.data.withUnsafeMutableBufferPointer { v in
            let n = v.count
            var i = 0
            let raw = UnsafeMutableRawPointer(v.baseAddress!)
            while i + 8 <= n {
                let x = raw.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self)
                raw.storeBytes(of: pointwiseMax(x, x * slope), toByteOffset: 4 * i, as: SIMD8<Float>.self)
                i += 8
            }
            while i < n { v[i] = max(v[i], v[i] * slope); i += 1 }
        }
    }

    /// The network's input for an image: gray, square, 64×64, CHW floats in [−1, 1].
    public static func prepare(_ image: Image) -> [Float] {
        image.converted(channels: image.hasAlpha ? image.colorChannels : image.channels)
            .squareResized(inputSize).toFloatCHW(channels: 1)
    }
}
