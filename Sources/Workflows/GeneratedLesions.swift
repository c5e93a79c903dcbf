import Foundation
import Core
import Engine
import Generators
import Compositor

/// Lesion patches sampled from a generator checkpoint (GAN or diffusion): `count` samples of
/// `className` are written to `folder` and read back as a lesion folder, each patch masked by
/// Otsu's threshold (its bright content) like any patch without a mask file.
public func generatedLesionSource(model: String, count: Int, className: String?, seed: UInt64, folder: URL) throws -> FolderLesionSource {
    var request = GenerationRequest(model: model, count: count, out: folder)
    request.className = className
    request.seed = seed
    request.resume = true
    try generateImages(request, progress: .none)
    // Only the PNG samples: the manifest beside them is not a patch.
    try? FileManager.default.removeItem(at: folder.appendingPathComponent(Shard.whole.manifestName))
    return try FolderLesionSource(folder: folder)
}
