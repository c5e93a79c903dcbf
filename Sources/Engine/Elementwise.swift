import Core
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Elementwise maps
//
// Every unary op here is `y = f(x)` with a pullback `dx += dy · f'(·)`, where f' is computed from
// whichever of x or y is cheaper (tanh and sigmoid reuse y).

/// Applies `forward` elementwise; `derivative(x, y)` gives dy/dx for the pullback.
@inline(__always)
func unaryOp(_ x: Tensor, name: String, cost: Int = 4, forward: @escaping (Float) -> Float, derivative: @escaping (Float, Float) -> Float) -> Tensor {
    Profiler.measure(name) {
    var out = uninitializedFloats(x.count)
    x.data.withUnsafeBufferPointer { xp in
        out.withUnsafeMutableBufferPointer { yp in
            Parallel.forRanges(xp.count, cost: cost) { r in for i in r { yp[i] = forward(xp[i]) } }
        }
    }
    return Tensor.makeResult(shape: x.shape, data: out, parents: [x], op: name) { y in
        let dy = y.grad!
        x.withGradBuffer { dx in
            x.data.withUnsafeBufferPointer { xp in
                y.data.withUnsafeBufferPointer { yp in
                    dy.withUnsafeBufferPointer { g in
                        Parallel.forRanges(g.count, cost: cost) { r in for i in r { dx[i] += g[i] * derivative(xp[i], yp[i]) } }
                    }
                }
            }
        }
    }
    }
}

/// max(x, 0); derivative 1 where x > 0, else 0.
public func relu(_ x: Tensor) -> Tensor { piecewiseLinear(x, negativeSlope: 0, name: "relu") }

/// x where x > 0, else slope·x; derivative 1 or slope.
public func leakyRelu(_ x: Tensor, slope: Float = 0.2) -> Tensor { piecewiseLinear(x, negativeSlope: slope, name: "leakyRelu") }

/// y = x for x > 0 and slope·x otherwise (ReLU when slope = 0), 8 lanes at a time in both
/// directions: the closure-per-element `unaryOp` was not inlined and cost ≈ 4 % of a DCGAN step.
func piecewiseLinear(_ x: Tensor, negativeSlope slope: Float, name: String) -> Tensor {
    Profiler.measure(name) {
        let n = x.count
        var out = uninitializedFloats(n)
        let zero = SIMD8<Float>(repeating: 0), slopes = SIMD8<Float>(repeating: slope)
        x.data.withUnsafeBufferPointer { xb in
            out.withUnsafeMutableBufferPointer { yb in
                let xp = xb.baseAddress!, yp = yb.baseAddress!
                Parallel.forRanges((n + 7) / 8, cost: 8) { range in
                    for v in range {
                        let i = v * 8
                        if i + 8 <= n {
                            let a = UnsafeRawPointer(xp + i).loadUnaligned(as: SIMD8<Float>.self)
                            // ReLU as max(x, 0): −0 becomes +0 and NaN stays NaN, in the vector body and the tail alike.
                            let y = slope == 0 ? a.replacing(with: zero, where: a .<= zero) : a.replacing(with: a * slopes, where: .!(a .> zero))
                            UnsafeMutableRawPointer(yp + i).storeBytes(of: y, as: SIMD8<Float>.self)
                        } else {
                            for j in i..<n { yp[j] = xp[j] > 0 ? xp[j] : (slope == 0 ? max(xp[j], 0) : slope * xp[j]) }
                        }
                    }
                }
            }
        }
        return Tensor.makeResult(shape: x.shape, data: out, parents: [x], op: name) { y in
            let dy = y.grad!
            x.withGradBuffer { dxb in
                x.data.withUnsafeBufferPointer { xb in
                    dy.withUnsafeBufferPointer { gb in
                        let xp = xb.baseAddress!, gp = gb.baseAddress!, dx = dxb.baseAddress!
                        let ones = SIMD8<Float>(repeating: 1)
                        Parallel.forRanges((n + 7) / 8, cost: 8) { range in
                            for v in range {
                                let i = v * 8
                                if i + 8 <= n {
                                    let a = UnsafeRawPointer(xp + i).loadUnaligned(as: SIMD8<Float>.self)
                                    let g = UnsafeRawPointer(gp + i).loadUnaligned(as: SIMD8<Float>.self)
                                    let d = ones.replacing(with: slopes, where: .!(a .> zero))
                                    let old = UnsafeRawPointer(dx + i).loadUnaligned(as: SIMD8<Float>.self)
                                    UnsafeMutableRawPointer(dx + i).storeBytes(of: old + g * d, as: SIMD8<Float>.self)
                                } else {
                                    for j in i..<n { dx[j] += gp[j] * (xp[j] > 0 ? 1 : slope) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

@inline(__always) func sigmoidValue(_ x: Float) -> Float { 1 / (1 + expf(-x)) }

// MARK: Vectorised transcendental maps

/// e^x on 16 lanes (one AVX-512 register when Engine is built for it, two AVX2 ones otherwise):
/// x = n·ln2 + r, e^r by the Cephes expf polynomial (|r| ≤ ln2/2, about 1 ulp), 2^n from exponent bits. Rounding uses the 1.5·2²³ trick so every step is a plain vector
/// instruction. Inputs are clamped to the normal range of Float.
// @_transparent: with 16 lanes the optimiser stopped inlining these (@inline(__always) is a
// hint) and every vector went through a call.
@_transparent
func simdExp(_ x: SIMD16<Float>) -> SIMD16<Float> {
    // replacing(with:where:) compiles to vminps/vmaxps; the stdlib's generic pointwiseMax was
    // left as an out-of-line call in every SiLU/GroupNorm loop (≈ 3 % of the U-Net forward).
    let upper = SIMD16<Float>(repeating: 88.0), lower = SIMD16<Float>(repeating: -87.0)
    let xc = x.replacing(with: upper, where: x .> upper).replacing(with: lower, where: x .< lower)
    let magic = SIMD16<Float>(repeating: 12_582_912)          // 1.5 · 2^23
    let t = xc * 1.442_695_04 + magic
    let n = t - magic
    let r = xc - n * 0.693_359_375 + n * 2.121_944_4e-4
    var p = SIMD16<Float>(repeating: 1.987_569_15e-4)
    p = p * r + 1.398_199_95e-3
    p = p * r + 8.333_451_9e-3
    p = p * r + 4.166_579_59e-2
    p = p * r + 0.166_666_655
    p = p * r + 0.5
    let y = p * r * r + r + 1
    let integer = unsafeBitCast(t, to: SIMD16<Int32>.self) &- 0x4B40_0000
    return y * unsafeBitCast((integer &+ 127) &<< 23, to: SIMD16<Float>.self)
}

@_transparent func simdSigmoid(_ x: SIMD16<Float>) -> SIMD16<Float> { 1 / (1 + simdExp(-x)) }

enum VectorMap { case silu, tanh, sigmoid }

@_transparent
func vectorForward(_ kind: VectorMap, _ x: SIMD16<Float>) -> SIMD16<Float> {
    switch kind {
    case .silu: return x * simdSigmoid(x)
    case .tanh: return 2 * simdSigmoid(2 * x) - 1
    case .sigmoid: return simdSigmoid(x)
    }
}

@_transparent
func vectorGradient(_ kind: VectorMap, _ x: SIMD16<Float>, _ y: SIMD16<Float>, _ dy: SIMD16<Float>) -> SIMD16<Float> {
    switch kind {
    case .silu: let s = simdSigmoid(x); return dy * s * (1 + x * (1 - s))
    case .tanh: return dy * (1 - y * y)
    case .sigmoid: return dy * y * (1 - y)
    }
}

/// Applies `kind` to `count` values, 16 lanes at a time; the tail goes through a padded vector.
func vectorMap(_ kind: VectorMap, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int) {
    Parallel.forRanges((count + 15) / 16, cost: 128) { range in
        for v in range {
            let i = v * 16
            if i + 16 <= count {
                let r = vectorForward(kind, UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self))
                UnsafeMutableRawPointer(y + i).storeBytes(of: r, as: SIMD16<Float>.self)
            } else {
                var lanes = SIMD16<Float>(repeating: 0)
                for j in 0..<(count - i) { lanes[j] = x[i + j] }
                let r = vectorForward(kind, lanes)
                for j in 0..<(count - i) { y[i + j] = r[j] }
            }
        }
    }
}

/// dx += f'(x, y) · dy, 16 lanes at a time.
func vectorMapGradient(_ kind: VectorMap, _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ dy: UnsafePointer<Float>,
                       _ dx: UnsafeMutablePointer<Float>, _ count: Int) {
    Parallel.forRanges((count + 15) / 16, cost: 128) { range in
        for v in range {
            let i = v * 16
            if i + 16 <= count {
                let g = vectorGradient(kind, UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self),
                                       UnsafeRawPointer(y + i).loadUnaligned(as: SIMD16<Float>.self),
                                       UnsafeRawPointer(dy + i).loadUnaligned(as: SIMD16<Float>.self))
                let old = UnsafeRawPointer(dx + i).loadUnaligned(as: SIMD16<Float>.self)
                UnsafeMutableRawPointer(dx + i).storeBytes(of: old + g, as: SIMD16<Float>.self)
            } else {
                var xl = SIMD16<Float>(repeating: 0), yl = xl, gl = xl
                for j in 0..<(count - i) { xl[j] = x[i + j]; yl[j] = y[i + j]; gl[j] = dy[i + j] }
                let g = vectorGradient(kind, xl, yl, gl)
                for j in 0..<(count - i) { dx[i + j] += g[j] }
            }
        }
    }
}

func vectorUnaryOp(_ x: Tensor, _ kind: VectorMap, name: String) -> Tensor {
    Profiler.measure(name) {
        let n = x.count
        var out = uninitializedFloats(n)
        x.data.withUnsafeBufferPointer { xp in
            out.withUnsafeMutableBufferPointer { yp in vectorMap(kind, xp.baseAddress!, yp.baseAddress!, n) }
        }
        return Tensor.makeResult(shape: x.shape, data: out, parents: [x], op: name) { y in
            let dy = y.grad!
            x.withGradBuffer { dx in
                x.data.withUnsafeBufferPointer { xp in
                    y.data.withUnsafeBufferPointer { yp in
                        dy.withUnsafeBufferPointer { g in
                            vectorMapGradient(kind, xp.baseAddress!, yp.baseAddress!, g.baseAddress!, dx.baseAddress!, n)
                        }
                    }
                }
            }
        }
    }
}

/// SiLU (swish): x · σ(x); derivative σ(x)·(1 + x·(1 − σ(x))).
public func silu(_ x: Tensor) -> Tensor { vectorUnaryOp(x, .silu, name: "silu") }

/// tanh(x) = 2σ(2x) − 1.
public func tanh(_ x: Tensor) -> Tensor { vectorUnaryOp(x, .tanh, name: "tanh") }

public func sigmoid(_ x: Tensor) -> Tensor { vectorUnaryOp(x, .sigmoid, name: "sigmoid") }

/// x · s for a constant s.
public func scale(_ x: Tensor, _ s: Float) -> Tensor {
    unaryOp(x, name: "scale", cost: 1, forward: { $0 * s }, derivative: { _, _ in s })
}

// MARK: - Binary ops with broadcasting over channels

/// How `b` lines up with `a` (N×C×H×W, or any shape when equal).
enum Broadcast {
    case same                 // b has a's shape
    case perChannel(Int)      // b is [Nb, C] or [Nb, C, 1, 1] with Nb ∈ {1, N}; value per (n, c)

    init(_ a: Tensor, _ b: Tensor, op: String) {
        if a.shape == b.shape { self = .same; return }
        let bShape = b.shape.count == 4 && b.shape[2] == 1 && b.shape[3] == 1 ? Array(b.shape.prefix(2)) : b.shape
        checkShape(a.rank == 4 && bShape.count == 2 && bShape[1] == a.shape[1] && (bShape[0] == 1 || bShape[0] == a.shape[0]),
                   op, "cannot broadcast \(b.shape) over \(a.shape) (needs equal shapes or [N|1, C] per channel)")
        self = .perChannel(bShape[0])
    }
}

/// a + b, with b equal in shape or broadcast per (sample, channel) over H×W.
public func add(_ a: Tensor, _ b: Tensor) -> Tensor { binary(a, b, op: "add", multiply: false) }

/// a ⊙ b, with b equal in shape or broadcast per (sample, channel) over H×W.
public func mul(_ a: Tensor, _ b: Tensor) -> Tensor { binary(a, b, op: "mul", multiply: true) }

public func + (a: Tensor, b: Tensor) -> Tensor { add(a, b) }
public func * (a: Tensor, b: Tensor) -> Tensor { mul(a, b) }

func binary(_ a: Tensor, _ b: Tensor, op: String, multiply: Bool) -> Tensor {
    Profiler.measure(op) {
    let mode = Broadcast(a, b, op: op)
    let n = a.count
    var out = uninitializedFloats(n)
    // For per-channel mode: a is [N, C, plane]; b index for row r = (n, c) is (nb == 1 ? c : r).
    let rows = a.rank == 4 ? a.shape[0] * a.shape[1] : 1
    let plane = n / max(rows, 1), channels = a.rank == 4 ? a.shape[1] : 1
    @inline(__always) func bIndex(_ row: Int, _ nb: Int) -> Int { nb == 1 ? row % channels : row }
    a.data.withUnsafeBufferPointer { ap in
        b.data.withUnsafeBufferPointer { bp in
            out.withUnsafeMutableBufferPointer { yp in
                switch mode {
                case .same:
                    Parallel.forRanges(n) { r in for i in r { yp[i] = multiply ? ap[i] * bp[i] : ap[i] + bp[i] } }
                case .perChannel(let nb):
                    Parallel.forEach(rows, cost: plane) { row in
                        let v = bp[bIndex(row, nb)], base = row * plane
                        for i in base..<base + plane { yp[i] = multiply ? ap[i] * v : ap[i] + v }
                    }
                }
            }
        }
    }
    return Tensor.makeResult(shape: a.shape, data: out, parents: [a, b], op: op) { y in
        let dy = y.grad!
        dy.withUnsafeBufferPointer { g in
            if a.requiresGrad {
                if !multiply { a.accumulateGrad(g) } else {
                    a.withGradBuffer { da in
                        b.data.withUnsafeBufferPointer { bp in
                            switch mode {
                            case .same: Parallel.forRanges(n) { r in for i in r { da[i] += g[i] * bp[i] } }
                            case .perChannel(let nb):
                                Parallel.forEach(rows, cost: plane) { row in
                                    let v = bp[bIndex(row, nb)], base = row * plane
                                    for i in base..<base + plane { da[i] += g[i] * v }
                                }
                            }
                        }
                    }
                }
            }
            if b.requiresGrad {
                b.withGradBuffer { db in
                    a.data.withUnsafeBufferPointer { ap in
                        switch mode {
                        case .same:
                            if multiply { Parallel.forRanges(n) { r in for i in r { db[i] += g[i] * ap[i] } } }
                            else { vectorAdd(db.baseAddress!, g.baseAddress!, n) }
                        case .perChannel(let nb):
                            // Fixed-order reduction per b element: independent of thread count.
                            let bCount = db.count
                            Parallel.forEach(bCount, cost: rows / bCount * plane) { j in
                                var s: Float = 0
                                var row = j
                                while row < rows {
                                    let base = row * plane
                                    if multiply { for i in base..<base + plane { s += g[i] * ap[i] } }
                                    else { s += vectorSum(g.baseAddress! + base, plane) }
                                    row += nb == 1 ? channels : rows
                                }
                                db[j] += s
                            }
                        }
                    }
                }
            }
        }
    }
    }
}

// MARK: - Shape ops

/// Same values, new shape (no copy until either side is written).
public func reshape(_ x: Tensor, _ shape: [Int]) -> Tensor {
    checkShape(shape.reduce(1, *) == x.count, "reshape", "cannot view \(x.shape) as \(shape)")
    return Tensor.makeResult(shape: shape, data: x.data, parents: [x]) { y in
        y.grad!.withUnsafeBufferPointer { x.accumulateGrad($0) }
    }
}

/// Concatenates N×Ci×H×W tensors along channels.
public func concatChannels(_ parts: [Tensor]) -> Tensor {
    Profiler.measure("concatChannels") {
    let first = parts[0]
    checkShape(parts.allSatisfy { $0.rank == 4 && $0.shape[0] == first.shape[0] && $0.shape[2] == first.shape[2] && $0.shape[3] == first.shape[3] },
               "concatChannels", "shapes \(parts.map(\.shape)) differ outside the channel axis")
    let n = first.shape[0], plane = first.shape[2] * first.shape[3]
    let channels = parts.map { $0.shape[1] }, total = channels.reduce(0, +)
    let offsets = channels.indices.map { channels[..<$0].reduce(0, +) }
    var out = uninitializedFloats(n * total * plane)
    out.withUnsafeMutableBufferPointer { yp in
        let y = yp.baseAddress!
        for (k, part) in parts.enumerated() {
            let c = channels[k], offset = offsets[k]
            part.data.withUnsafeBufferPointer { pp in
                let src = pp.baseAddress!
                // Images on the workers (done serially, the U-Net forward's concats took 0.036 s
                // with 2 threads against 0.030 s with 1).
                Parallel.forEach(n, cost: c * plane) { img in
                    (y + (img * total + offset) * plane).update(from: src + img * c * plane, count: c * plane)
                }
            }
        }
    }
    return Tensor.makeResult(shape: [n, total, first.shape[2], first.shape[3]], data: out, parents: parts) { y in
        y.grad!.withUnsafeBufferPointer { g in
            for (k, part) in parts.enumerated() where part.requiresGrad {
                let c = channels[k], offset = offsets[k]
                part.withGradBuffer { dp in
                    let d = dp.baseAddress!
                    Parallel.forEach(n, cost: c * plane) { img in
                        vectorAdd(d + img * c * plane, g.baseAddress! + (img * total + offset) * plane, c * plane)
                    }
                }
            }
        }
    }
    }
}

/// The window rows top..<top + height, columns left..<left + width of every plane of N×C×H×W.
public func cropSpatial(_ x: Tensor, top: Int, left: Int, height: Int, width: Int) -> Tensor {
    checkShape(x.rank == 4 && top >= 0 && left >= 0 && height > 0 && width > 0 && top + height <= x.shape[2] && left + width <= x.shape[3],
               "cropSpatial", "window \(height)×\(width) at (\(top), \(left)) does not fit in \(x.shape)")
    let planes = x.shape[0] * x.shape[1], h = x.shape[2], w = x.shape[3]
    var out = uninitializedFloats(planes * height * width)
    x.data.withUnsafeBufferPointer { xp in
        out.withUnsafeMutableBufferPointer { yp in
            for p in 0..<planes {
                for r in 0..<height {
                    (yp.baseAddress! + (p * height + r) * width).update(from: xp.baseAddress! + (p * h + top + r) * w + left, count: width)
                }
            }
        }
    }
    return Tensor.makeResult(shape: [x.shape[0], x.shape[1], height, width], data: out, parents: [x], op: "cropSpatial") { y in
        y.grad!.withUnsafeBufferPointer { g in
            x.withGradBuffer { dx in
                for p in 0..<planes {
                    for r in 0..<height {
                        vectorAdd(dx.baseAddress! + (p * h + top + r) * w + left, g.baseAddress! + (p * height + r) * width, width)
                    }
                }
            }
        }
    }
}

/// Nearest-neighbour 2× upsampling of N×C×H×W.
public func upsampleNearest2x(_ x: Tensor) -> Tensor {
    Profiler.measure("upsampleNearest2x") {
    checkShape(x.rank == 4, "upsampleNearest2x", "input \(x.shape) is not N×C×H×W")
    let rows = x.shape[0] * x.shape[1], h = x.shape[2], w = x.shape[3]
    var out = uninitializedFloats(rows * 4 * h * w)
    x.data.withUnsafeBufferPointer { xp in
        out.withUnsafeMutableBufferPointer { yp in
            Parallel.forEach(rows, cost: 4 * h * w) { r in
                let src = xp.baseAddress! + r * h * w, dst = yp.baseAddress! + r * 4 * h * w
                for i in 0..<h {
                    let d0 = dst + 2 * i * 2 * w
                    for j in 0..<w { let v = src[i * w + j]; d0[2 * j] = v; d0[2 * j + 1] = v }
                    (d0 + 2 * w).update(from: d0, count: 2 * w)
                }
            }
        }
    }
    return Tensor.makeResult(shape: [x.shape[0], x.shape[1], 2 * h, 2 * w], data: out, parents: [x]) { y in
        x.withGradBuffer { dx in
            y.grad!.withUnsafeBufferPointer { g in
                Parallel.forEach(rows, cost: 4 * h * w) { r in
                    let src = g.baseAddress! + r * 4 * h * w, dst = dx.baseAddress! + r * h * w
                    for i in 0..<h {
                        let s0 = src + 2 * i * 2 * w, s1 = s0 + 2 * w
                        for j in 0..<w { dst[i * w + j] += s0[2 * j] + s0[2 * j + 1] + s1[2 * j] + s1[2 * j + 1] }
                    }
                }
            }
        }
    }
    }
}

/// Bilinear 2× upsampling of N×C×H×W, PyTorch's `interpolate(scale_factor=2, mode="bilinear",
/// align_corners=False)`: each output pixel is ¾ of its nearest input and ¼ of the next one on each
/// axis (clamped at the border). It equals nearest ×2 followed by a [1, 2, 1]/4 blur, so it adds no
/// frequencies above the input's Nyquist limit, which nearest ×2 does.
public func upsampleBilinear2x(_ x: Tensor) -> Tensor {
    Profiler.measure("upsampleBilinear2x") {
    checkShape(x.rank == 4, "upsampleBilinear2x", "input \(x.shape) is not N×C×H×W")
    let rows = x.shape[0] * x.shape[1], h = x.shape[2], w = x.shape[3]
    var out = uninitializedFloats(rows * 4 * h * w)
    x.data.withUnsafeBufferPointer { xp in
        out.withUnsafeMutableBufferPointer { yp in
            Parallel.forRanges(rows, cost: 8 * h * w) { range in
                // Widen each input row into the two output columns per pixel, then mix rows; one
                // scratch plane per worker.
                var wide = [Float](repeating: 0, count: 2 * w * h)
                wide.withUnsafeMutableBufferPointer { wp in
                    let scratch = wp.baseAddress!
                    for r in range {
                        let src = xp.baseAddress! + r * h * w, dst = yp.baseAddress! + r * 4 * h * w
                        for i in 0..<h {
                            let s = src + i * w, d = scratch + i * 2 * w
                            for j in 0..<w {
                                let left = s[max(j - 1, 0)], centre = s[j], right = s[min(j + 1, w - 1)]
                                d[2 * j] = 0.75 * centre + 0.25 * left
                                d[2 * j + 1] = 0.75 * centre + 0.25 * right
                            }
                        }
                        for i in 0..<h {
                            let up = scratch + max(i - 1, 0) * 2 * w, centre = scratch + i * 2 * w
                            let down = scratch + min(i + 1, h - 1) * 2 * w
                            let even = dst + 2 * i * 2 * w, odd = even + 2 * w
                            for j in 0..<(2 * w) {
                                even[j] = 0.75 * centre[j] + 0.25 * up[j]
                                odd[j] = 0.75 * centre[j] + 0.25 * down[j]
                            }
                        }
                    }
                }
            }
        }
    }
    return Tensor.makeResult(shape: [x.shape[0], x.shape[1], 2 * h, 2 * w], data: out, parents: [x]) { y in
        x.withGradBuffer { dx in
            y.grad!.withUnsafeBufferPointer { g in
                Parallel.forRanges(rows, cost: 8 * h * w) { range in
                    // The transpose of the forward's two passes, in reverse order.
                    var wide = [Float](repeating: 0, count: 2 * w * h)
                    wide.withUnsafeMutableBufferPointer { wp in
                        let scratch = wp.baseAddress!
                        for r in range {
                            let src = g.baseAddress! + r * 4 * h * w, dst = dx.baseAddress! + r * h * w
                            wp.update(repeating: 0)
                            for i in 0..<h {
                                let even = src + 2 * i * 2 * w, odd = even + 2 * w
                                let up = scratch + max(i - 1, 0) * 2 * w, centre = scratch + i * 2 * w
                                let down = scratch + min(i + 1, h - 1) * 2 * w
                                for j in 0..<(2 * w) {
                                    centre[j] += 0.75 * (even[j] + odd[j])
                                    up[j] += 0.25 * even[j]
                                    down[j] += 0.25 * odd[j]
                                }
                            }
                            for i in 0..<h {
                                let d = dst + i * w, s = scratch + i * 2 * w
                                for j in 0..<w {
                                    d[j] += 0.75 * (s[2 * j] + s[2 * j + 1])
                                    d[max(j - 1, 0)] += 0.25 * s[2 * j]
                                    d[min(j + 1, w - 1)] += 0.25 * s[2 * j + 1]
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    }
}

// MARK: - Linear algebra

/// x (N×in) · Wᵀ (W: out×in) + b: PyTorch's Linear.
public func linear(_ x: Tensor, weight: Tensor, bias: Tensor? = nil) -> Tensor {
    Profiler.measure("linear") {
    checkShape(x.rank == 2 && weight.rank == 2 && x.shape[1] == weight.shape[1], "linear",
               "input \(x.shape) and weight \(weight.shape) need N×in and out×in")
    let n = x.shape[0], inF = x.shape[1], outF = weight.shape[0]
    if let bias { checkShape(bias.shape == [outF], "linear", "bias \(bias.shape) for \(outF) outputs") }
    var out = [Float](repeating: 0, count: n * outF)
    if let bias { for i in 0..<n { for j in 0..<outF { out[i * outF + j] = bias.data[j] } } }
    x.data.withUnsafeBufferPointer { xp in
        weight.data.withUnsafeBufferPointer { wp in
            out.withUnsafeMutableBufferPointer { yp in
                sgemm(transB: true, m: n, n: outF, k: inF, a: xp.baseAddress!, lda: inF, b: wp.baseAddress!, ldb: inF,
                      beta: bias == nil ? 0 : 1, c: yp.baseAddress!, ldc: outF)
            }
        }
    }
    let parents = bias.map { [x, weight, $0] } ?? [x, weight]
    return Tensor.makeResult(shape: [n, outF], data: out, parents: parents) { y in
        y.grad!.withUnsafeBufferPointer { g in
            if x.requiresGrad {
                x.withGradBuffer { dx in
                    weight.data.withUnsafeBufferPointer { wp in
                        sgemm(m: n, n: inF, k: outF, a: g.baseAddress!, lda: outF, b: wp.baseAddress!, ldb: inF, beta: 1, c: dx.baseAddress!, ldc: inF)
                    }
                }
            }
            if weight.requiresGrad {
                weight.withGradBuffer { dw in
                    x.data.withUnsafeBufferPointer { xp in
                        sgemm(transA: true, m: outF, n: inF, k: n, a: g.baseAddress!, lda: outF, b: xp.baseAddress!, ldb: inF, beta: 1, c: dw.baseAddress!, ldc: inF)
                    }
                }
            }
            if let bias, bias.requiresGrad {
                bias.withGradBuffer { db in for i in 0..<n { for j in 0..<outF { db[j] += g[i * outF + j] } } }
            }
        }
    }
    }
}

/// A (M×K) · B (K×N).
public func matmul(_ a: Tensor, _ b: Tensor) -> Tensor {
    checkShape(a.rank == 2 && b.rank == 2 && a.shape[1] == b.shape[0], "matmul", "shapes \(a.shape) and \(b.shape) do not chain")
    let m = a.shape[0], k = a.shape[1], n = b.shape[1]
    var out = [Float](repeating: 0, count: m * n)
    a.data.withUnsafeBufferPointer { ap in
        b.data.withUnsafeBufferPointer { bp in
            out.withUnsafeMutableBufferPointer { cp in
                sgemm(m: m, n: n, k: k, a: ap.baseAddress!, lda: k, b: bp.baseAddress!, ldb: n, c: cp.baseAddress!, ldc: n)
            }
        }
    }
    return Tensor.makeResult(shape: [m, n], data: out, parents: [a, b]) { y in
        y.grad!.withUnsafeBufferPointer { g in
            if a.requiresGrad {
                a.withGradBuffer { da in
                    b.data.withUnsafeBufferPointer { bp in
                        sgemm(transB: true, m: m, n: k, k: n, a: g.baseAddress!, lda: n, b: bp.baseAddress!, ldb: n, beta: 1, c: da.baseAddress!, ldc: k)
                    }
                }
            }
            if b.requiresGrad {
                b.withGradBuffer { db in
                    a.data.withUnsafeBufferPointer { ap in
                        sgemm(transA: true, m: k, n: n, k: m, a: ap.baseAddress!, lda: k, b: g.baseAddress!, ldb: n, beta: 1, c: db.baseAddress!, ldc: n)
                    }
                }
            }
        }
    }
}

/// Rows of `table` (V×D) picked by `indices`: N×D. Gradients scatter-add into the table.
public func embedding(_ indices: [Int], table: Tensor) -> Tensor {
    checkShape(table.rank == 2, "embedding", "table \(table.shape) is not V×D")
    let v = table.shape[0], d = table.shape[1]
    checkShape(indices.allSatisfy { $0 >= 0 && $0 < v }, "embedding", "index out of range 0..<\(v) in \(indices)")
    var out = [Float](repeating: 0, count: indices.count * d)
    for (i, idx) in indices.enumerated() { for j in 0..<d { out[i * d + j] = table.data[idx * d + j] } }
    return Tensor.makeResult(shape: [indices.count, d], data: out, parents: [table]) { y in
        let g = y.grad!
        table.withGradBuffer { dt in
            for (i, idx) in indices.enumerated() { for j in 0..<d { dt[idx * d + j] += g[i * d + j] } }
        }
    }
}

// MARK: - Reductions

/// Sum of all values, as a one-element tensor.
public func sum(_ x: Tensor) -> Tensor {
    var s: Double = 0
    for v in x.data { s += Double(v) }
    return Tensor.makeResult(shape: [1], data: [Float(s)], parents: [x]) { y in
        let g = y.grad![0]
        x.withGradBuffer { dx in for i in dx.indices { dx[i] += g } }
    }
}

public func mean(_ x: Tensor) -> Tensor { scale(sum(x), 1 / Float(x.count)) }

/// Σ over every axis but the first: N×… → [N].
public func sumPerSample(_ x: Tensor) -> Tensor {
    let n = x.shape[0], m = x.count / max(n, 1)
    var out = [Float](repeating: 0, count: n)
    x.data.withUnsafeBufferPointer { xp in for i in 0..<n { out[i] = vectorSum(xp.baseAddress! + i * m, m) } }
    return Tensor.makeResult(shape: [n], data: out, parents: [x]) { y in
        let g = y.grad!
        x.withGradBuffer { dx in for i in 0..<n { let v = g[i]; for j in i * m..<(i + 1) * m { dx[j] += v } } }
    }
}
