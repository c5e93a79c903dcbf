import Core

/// Tiles square CHW Float images in [-1, 1] into one 8-bit image for progress snapshots and
/// reports (like torchvision's `make_grid`): row-major, `columns` per row (fewer if there are
/// fewer images), `padding` pixels of white between tiles and around the edge.
/// - Parameters:
///   - images: each `channels * size * size` floats, planar CHW.
///   - channels: 1 (gray grid) or 3 (RGB grid).
/// - Returns: an 8-bit image of `channels` channels. With no images, a single padding cell.
public func makeGrid(images: [[Float]], channels: Int, size: Int, columns: Int, padding: Int = 2) -> Image {
    precondition(channels == 1 || channels == 3, "makeGrid: channels must be 1 or 3, got \(channels)")
    precondition(size >= 1 && columns >= 1 && padding >= 0, "makeGrid: size, columns must be >= 1 and padding >= 0")
    let perImage = channels * size * size
    for (i, image) in images.enumerated() {
        precondition(image.count == perImage, "makeGrid: image \(i) has \(image.count) values, expected \(perImage)")
    }
    let cols = max(1, min(columns, images.count))
    let rows = max(1, (images.count + cols - 1) / cols)
    let width = cols * size + (cols + 1) * padding
    let height = rows * size + (rows + 1) * padding
    var grid = Image(width: max(1, width), height: max(1, height), channels: channels, bitDepth: 8,
                     samples: [UInt16](repeating: 255, count: max(1, width) * max(1, height) * channels))
    let gridWidth = grid.width
    grid.samples.withUnsafeMutableBufferPointer { dst in
        for (n, image) in images.enumerated() {
            let x0 = padding + (n % cols) * (size + padding)
            let y0 = padding + (n / cols) * (size + padding)
            // Same mapping and rounding as Image(floatCHW:) at 8 bits.
            let tile = Image(floatCHW: image, width: size, height: size, channels: channels, bitDepth: 8)
            tile.samples.withUnsafeBufferPointer { src in
                let rowSamples = size * channels
                for y in 0..<size {
                    let to = ((y0 + y) * gridWidth + x0) * channels
                    for i in 0..<rowSamples { dst[to + i] = src[y * rowSamples + i] }
                }
            }
        }
    }
    return grid
}
