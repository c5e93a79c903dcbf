import Core
import Engine
import Imaging

// MARK: - Charts drawn by medsynth itself (no browser library)
//
// A small rasteriser for the report's histograms: white canvas, black axes with tick marks,
// one translucent filled step histogram per series (so overlaps stay visible), an optional
// vertical marker. Axis values are written as text in the HTML around the picture.

/// One histogram series: bin heights (any non-negative scale) and an RGB colour.
public struct ChartSeries {
    public var values: [Double]
    public var colour: (r: UInt8, g: UInt8, b: UInt8)
    public init(values: [Double], colour: (r: UInt8, g: UInt8, b: UInt8)) { self.values = values; self.colour = colour }
}

/// Report colours (the matplotlib "tab10" blue and orange, and a red for markers).
enum ChartColour {
    static let real: (r: UInt8, g: UInt8, b: UInt8) = (31, 119, 180)
    static let synthetic: (r: UInt8, g: UInt8, b: UInt8) = (255, 127, 14)
    static let marker: (r: UInt8, g: UInt8, b: UInt8) = (214, 39, 40)
}

/// An 8-bit RGB canvas with pixel-level drawing.
struct Canvas {
    var image: Image
    init(width: Int, height: Int) {
        image = Image(width: width, height: height, channels: 3, bitDepth: 8, samples: [UInt16](repeating: 255, count: width * height * 3))
    }

    /// Blends `colour` over pixel (x, y) with opacity `alpha`; outside the canvas is ignored.
    mutating func plot(_ x: Int, _ y: Int, _ colour: (r: UInt8, g: UInt8, b: UInt8), alpha: Double = 1) {
        guard x >= 0, y >= 0, x < image.width, y < image.height else { return }
        let base = (y * image.width + x) * 3
        for (c, v) in [colour.r, colour.g, colour.b].enumerated() {
            let old = Double(image.samples[base + c])
            image.samples[base + c] = UInt16((old * (1 - alpha) + Double(v) * alpha).rounded())
        }
    }

    mutating func fill(x0: Int, y0: Int, x1: Int, y1: Int, _ colour: (r: UInt8, g: UInt8, b: UInt8), alpha: Double = 1) {
        for y in min(y0, y1)...max(y0, y1) { for x in min(x0, x1)...max(x0, x1) { plot(x, y, colour, alpha: alpha) } }
    }
}

/// A histogram chart of one or more series over the same bins, `width`×`height` pixels.
/// - Parameters:
///   - marker: an optional vertical line at this fraction (0...1) of the x axis.
///   - ticks: tick marks dividing each axis into this many parts.
/// The plot area is inset 30 px left, 20 px bottom and 8 px top and right; the y axis runs from
/// 0 to the tallest bin.
func histogramChart(_ series: [ChartSeries], width: Int = 560, height: Int = 200, marker: Double? = nil, ticks: Int = 4) -> Image {
    var canvas = Canvas(width: width, height: height)
    let left = 30, right = width - 8, top = 8, bottom = height - 20
    let plotW = right - left, plotH = bottom - top
    let peak = max(series.flatMap(\.values).filter(\.isFinite).max() ?? 0, 1e-300)
    for s in series where !s.values.isEmpty {
        let bins = s.values.count
        var previousTop: Int?
        for x in 0..<plotW {
            let v = s.values[min(bins - 1, x * bins / plotW)]
            let h = v.isFinite ? Int((Double(plotH) * max(v, 0) / peak).rounded()) : 0
            let yTop = bottom - h
            if h > 0 { canvas.fill(x0: left + x, y0: yTop, x1: left + x, y1: bottom - 1, s.colour, alpha: 0.45) }
            // Outline: the top of the bar, joined vertically to the previous column.
            let from = previousTop ?? yTop
            for y in min(from, yTop)...max(from, yTop) where y < bottom { canvas.plot(left + x, y, s.colour) }
            previousTop = yTop
        }
    }
    if let marker, marker.isFinite {
        let x = left + Int((Double(plotW) * min(max(marker, 0), 1)).rounded())
        var y = top
        while y < bottom { canvas.fill(x0: x, y0: y, x1: x, y1: min(y + 3, bottom - 1), ChartColour.marker); y += 6 }
    }
    // Axes and ticks.
    let black: (r: UInt8, g: UInt8, b: UInt8) = (0, 0, 0)
    canvas.fill(x0: left, y0: bottom, x1: right, y1: bottom, black)
    canvas.fill(x0: left - 1, y0: top, x1: left - 1, y1: bottom, black)
    for t in 0...ticks {
        let x = left + plotW * t / ticks, y = bottom - plotH * t / ticks
        canvas.fill(x0: x, y0: bottom + 1, x1: x, y1: bottom + 5, black)
        canvas.fill(x0: left - 6, y0: y, x1: left - 2, y1: y, black)
    }
    return canvas.image
}

/// Counts of `values` in `bins` equal bins over [lo, hi] (values outside go to the end bins).
func binCounts(_ values: [Double], bins: Int, lo: Double, hi: Double) -> [Double] {
    var counts = [Double](repeating: 0, count: bins)
    let span = max(hi - lo, 1e-300)
    for v in values where v.isFinite { counts[min(bins - 1, max(0, Int((v - lo) / span * Double(bins))))] += 1 }
    return counts
}
