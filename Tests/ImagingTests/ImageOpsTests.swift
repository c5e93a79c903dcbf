import Foundation
import XCTest
@testable import Imaging
import TestSupport
import Core

final class ImageOpsTests: XCTestCase {
    private func gray(_ width: Int, _ height: Int, _ values: [UInt16], bitDepth: Int = 8) -> Image {
        Image(width: width, height: height, channels: 1, bitDepth: bitDepth, samples: values)
    }

    // MARK: - Float tensors

    func testFloatRoundTripIsExactForEvery8And16BitValue() {
        let all8 = gray(16, 16, (0..<256).map(UInt16.init))
        let f8 = all8.toFloatCHW()
        XCTAssertEqual(f8.first, -1)
        XCTAssertEqual(f8.last, 1)
        XCTAssertEqual(f8[128], Float(128) * 2 / 255 - 1, accuracy: 1e-7)
        XCTAssertEqual(Image(floatCHW: f8, width: 16, height: 16, channels: 1, bitDepth: 8), all8)

        let all16 = gray(256, 256, (0..<65536).map { UInt16($0) }, bitDepth: 16)
        let f16 = all16.toFloatCHW()
        XCTAssertEqual(f16.first, -1)
        XCTAssertEqual(f16.last, 1)
        XCTAssertEqual(Image(floatCHW: f16, width: 256, height: 256, channels: 1, bitDepth: 16), all16)

        // RGB keeps its planes apart: CHW order.
        let rgb = Image(width: 2, height: 1, channels: 3, bitDepth: 8, samples: [0, 255, 51, 255, 0, 102])
        let planes = rgb.toFloatCHW()
        XCTAssertEqual(Array(planes[0..<4]), [-1, 1, 1, -1])
        XCTAssertEqual(planes[4], 51.0 * 2 / 255 - 1, accuracy: 1e-6)
        XCTAssertEqual(planes[5], 102.0 * 2 / 255 - 1, accuracy: 1e-6)
        XCTAssertEqual(Image(floatCHW: rgb.toFloatCHW(), width: 2, height: 1, channels: 3, bitDepth: 8), rgb)
    }

    func testFloatToImageClampsAndRoundsHalfAwayFromZero() {
        // 0 maps to 127.5 at 8 bits (rounds up to 128); ±2 clamp; NaN is black.
        let image = Image(floatCHW: [0, 2, -3, .nan, -1, 1], width: 6, height: 1, channels: 1, bitDepth: 8)
        XCTAssertEqual(image.samples, [128, 255, 0, 0, 0, 255])
        // 0 maps to 32767.5 at 16 bits.
        XCTAssertEqual(Image(floatCHW: [0], width: 1, height: 1, channels: 1, bitDepth: 16).samples, [32768])
    }

    func testChannelSelectionInFloatConversion() {
        // BT.601 luma of pure red, green, blue and of an RGBA pixel (alpha ignored).
        let rgba = Image(width: 3, height: 1, channels: 4, bitDepth: 8,
                         samples: [255, 0, 0, 7, 0, 255, 0, 7, 0, 0, 255, 7])
        let luma = rgba.toFloatCHW(channels: 1)
        XCTAssertEqual(luma[0], 0.299 * 2 - 1, accuracy: 1e-6)
        XCTAssertEqual(luma[1], 0.587 * 2 - 1, accuracy: 1e-6)
        XCTAssertEqual(luma[2], 0.114 * 2 - 1, accuracy: 1e-6)
        XCTAssertEqual(rgba.toFloatCHW().count, 9)  // alpha dropped
        let g = gray(2, 1, [0, 255])
        XCTAssertEqual(g.toFloatCHW(channels: 3), [-1, 1, -1, 1, -1, 1])
    }

    // MARK: - Channels and depth

    func testChannelConversions() {
        let rgba = Image(width: 1, height: 1, channels: 4, bitDepth: 8, samples: [200, 100, 50, 9])
        // round(0.299*200 + 0.587*100 + 0.114*50) = round(124.2) = 124
        XCTAssertEqual(rgba.converted(channels: 1).samples, [124])
        XCTAssertEqual(rgba.converted(channels: 2).samples, [124, 9])
        XCTAssertEqual(rgba.converted(channels: 3).samples, [200, 100, 50])
        let g = gray(1, 1, [77], bitDepth: 16)
        XCTAssertEqual(g.converted(channels: 2).samples, [77, 65535])
        XCTAssertEqual(g.converted(channels: 3).samples, [77, 77, 77])
        XCTAssertEqual(g.converted(channels: 4).samples, [77, 77, 77, 65535])
        XCTAssertEqual(g.converted(channels: 3).converted(channels: 1), g)
    }

    func testBitDepthConversions() {
        let all8 = gray(256, 1, (0..<256).map(UInt16.init))
        let wide = all8.converted(bitDepth: 16)
        XCTAssertEqual(wide.samples[255], 65535)
        XCTAssertEqual(wide.samples[1], 257)
        XCTAssertEqual(wide.converted(bitDepth: 8), all8)
        // 16 → 8 rounds to nearest: 128/257 = 0.498 → 0, 129/257 = 0.502 → 1, 65535 → 255.
        XCTAssertEqual(gray(4, 1, [128, 129, 32896, 65535], bitDepth: 16).converted(bitDepth: 8).samples, [0, 1, 128, 255])
    }

    // MARK: - Geometry

    func testAreaShrinkAveragesWhatEachOutputPixelCovers() {
        XCTAssertEqual(gray(4, 1, [10, 20, 30, 41]).resized(width: 2, height: 1).samples, [15, 36])  // 35.5 rounds up
        // 3 → 2: output 0 covers source [0, 1.5): (2*0 + 30) / 3 = 10; output 1: (30 + 2*90) / 3 = 70.
        XCTAssertEqual(gray(3, 1, [0, 30, 90]).resized(width: 2, height: 1).samples, [10, 70])
        // 4x4 → 2x2 averages 2x2 blocks.
        let blocks = gray(4, 4, [0, 2, 100, 100,
                                 4, 6, 100, 104,
                                 8, 8, 40, 0,
                                 8, 8, 0, 0])
        XCTAssertEqual(blocks.resized(width: 2, height: 2).samples, [3, 101, 8, 10])
    }

    func testBilinearEnlargeUsesHalfPixelCentres() {
        // 2 → 4: output centres map to source -0.25 (clamped), 0.25, 0.75, 1.25 (clamped).
        XCTAssertEqual(gray(2, 1, [0, 100]).resized(width: 4, height: 1).samples, [0, 25, 75, 100])
        // 2x2 → 4x4, pixel (1, 1) sits at source (0.25, 0.25):
        // 0.75*0.75*0 + 0.25*0.75*100 + 0.75*0.25*200 + 0.25*0.25*300 = 75.
        let up = gray(2, 2, [0, 100, 200, 300], bitDepth: 16).resized(width: 4, height: 4)
        XCTAssertEqual(up[1, 1, 0], 75)
        XCTAssertEqual(up[0, 0, 0], 0)
        XCTAssertEqual(up[3, 3, 0], 300)
        XCTAssertEqual(up[2, 0, 0], 75)  // x = 0.75 on the top row: 0.25*0 + 0.75*100
    }

    func testMixedResizeConstantImagesAndIdentity() {
        // Shrink x (area) and enlarge y (bilinear) at once, on 3 channels.
        var image = Image(width: 4, height: 1, channels: 3, bitDepth: 8)
        for x in 0..<4 { for c in 0..<3 { image[x, 0, c] = UInt16(x * 10 + c) } }
        let mixed = image.resized(width: 2, height: 3)
        XCTAssertEqual([mixed.width, mixed.height, mixed.channels], [2, 3, 3])
        for y in 0..<3 {
            XCTAssertEqual((0..<3).map { mixed[0, y, $0] }, [5, 6, 7])  // (0 + 10) / 2 + c
            XCTAssertEqual((0..<3).map { mixed[1, y, $0] }, [25, 26, 27])
        }
        let constant = gray(7, 5, [UInt16](repeating: 40000, count: 35), bitDepth: 16)
        for (w, h) in [(3, 11), (1, 1), (20, 2), (7, 4)] {
            XCTAssertEqual(Set(constant.resized(width: w, height: h).samples), [40000], "\(w)x\(h)")
        }
        XCTAssertEqual(constant.resized(width: 7, height: 5), constant)
    }

    func testCentreCropAndSquareResize() {
        let wide = gray(5, 2, [0, 1, 2, 3, 4,
                               10, 11, 12, 13, 14])
        XCTAssertEqual(wide.centerCropped(side: 2).samples, [1, 2, 11, 12])  // offset (5-2)/2 = 1
        XCTAssertEqual(wide.squareResized(2).samples, [1, 2, 11, 12])
        XCTAssertEqual(wide.squareResized(1).samples, [7])  // (1 + 2 + 11 + 12) / 4 = 6.5, half away → 7
        let tall = gray(1, 4, [5, 6, 7, 8])
        XCTAssertEqual(tall.squareResized(1).samples, [6])  // crop keeps row (4-1)/2 = 1
        let rgb = Image(width: 6, height: 4, channels: 3, bitDepth: 16)
        let square = rgb.squareResized(3)
        XCTAssertEqual([square.width, square.height, square.channels, square.bitDepth], [3, 3, 3, 16])
    }

    // MARK: - Grids

    func testGridPlacesTilesRowMajorWithWhitePadding() {
        // Three 2x2 gray tiles, 2 columns, padding 1: 2*2 + 3 = 7 wide, 2 rows → 7 high.
        let tiles: [[Float]] = [[-1, -1, -1, -1], [1, 1, 1, 1], [0, 0, 0, 0]]
        let grid = makeGrid(images: tiles, channels: 1, size: 2, columns: 2, padding: 1)
        XCTAssertEqual([grid.width, grid.height, grid.channels, grid.bitDepth], [7, 7, 1, 8])
        XCTAssertEqual(grid[1, 1, 0], 0)      // tile 0 at (1, 1)
        XCTAssertEqual(grid[2, 2, 0], 0)
        XCTAssertEqual(grid[4, 1, 0], 255)    // tile 1 at (4, 1)
        XCTAssertEqual(grid[1, 4, 0], 128)    // tile 2 at (1, 4), second row
        XCTAssertEqual(grid[3, 1, 0], 255)    // padding column between tiles
        XCTAssertEqual(grid[0, 0, 0], 255)
        XCTAssertEqual(grid[4, 4, 0], 255)    // empty fourth cell stays background
        let black = grid.samples.filter { $0 == 0 }.count
        XCTAssertEqual(black, 4)

        // RGB tile planes land in the right channels; fewer images than columns shrink the grid.
        let red: [Float] = [1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1, -1]
        let single = makeGrid(images: [red], channels: 3, size: 2, columns: 8, padding: 0)
        XCTAssertEqual([single.width, single.height], [2, 2])
        XCTAssertEqual(single.samples, [UInt16](repeating: 0, count: 4).flatMap { _ in [255, 0, 0] as [UInt16] })
    }
}
