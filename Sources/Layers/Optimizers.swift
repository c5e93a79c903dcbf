#if canImport(Glibc)
import Glibc
#endif
import Core
import Engine

// MARK: - Adam / AdamW
//
// Kingma & Ba 2015, Algorithm 1, with bias correction; AdamW (Loshchilov & Hutter 2019) applies
// weight decay to the parameter directly, decoupled from the gradient moments.

public final class Adam {
    public let parameters: [Tensor]
    public var learningRate: Float
    public let beta1: Float, beta2: Float, eps: Float
    /// Decoupled weight decay (AdamW); 0 gives plain Adam.
    public let weightDecay: Float
    public private(set) var step = 0
    /// First and second moment estimates, one per parameter.
    public var m: [[Float]], v: [[Float]]

    public init(_ parameters: [Tensor], learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8, weightDecay: Float = 0) {
        self.parameters = parameters
        self.learningRate = learningRate; self.beta1 = beta1; self.beta2 = beta2; self.eps = eps; self.weightDecay = weightDecay
        m = parameters.map { [Float](repeating: 0, count: $0.count) }
        v = m
    }

    /// AdamW with PyTorch's defaults (weight decay 0.01).
    public static func adamW(_ parameters: [Tensor], learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999, weightDecay: Float = 0.01) -> Adam {
        Adam(parameters, learningRate: learningRate, beta1: beta1, beta2: beta2, weightDecay: weightDecay)
    }

    /// One update from the accumulated gradients; parameters without a gradient are left alone.
    public func update() {
        step += 1
        let correction1 = 1 - powf(beta1, Float(step)), correction2 = 1 - powf(beta2, Float(step))
        let stepSize = learningRate / correction1, decay = 1 - learningRate * weightDecay
        let (b1, b2, eps) = (beta1, beta2, eps)
        let sqrtCorrection2 = correction2.squareRoot()
        for (index, p) in parameters.enumerated() {
            guard let grad = p.grad else { continue }
            grad.withUnsafeBufferPointer { g in
                p.data.withUnsafeMutableBufferPointer { w in
                    m[index].withUnsafeMutableBufferPointer { mp in
                        v[index].withUnsafeMutableBufferPointer { vp in
                            Parallel.forRanges(w.count, cost: 10) { range in
                                // Eight lanes at a time with the scalar loop's operations in its
                                // order (no fused multiply-adds), so every lane rounds as it did.
                                typealias V = SIMD8<Float>
                                let (mb, vb, wb, gb) = (mp.baseAddress!, vp.baseAddress!, w.baseAddress!, g.baseAddress!)
                                var i = range.lowerBound
                                while i + 8 <= range.upperBound {
                                    let gv = UnsafeRawPointer(gb + i).loadUnaligned(as: V.self)
                                    let mv = V(repeating: b1) * UnsafeRawPointer(mb + i).loadUnaligned(as: V.self) + V(repeating: 1 - b1) * gv
                                    let vv = V(repeating: b2) * UnsafeRawPointer(vb + i).loadUnaligned(as: V.self) + V(repeating: 1 - b2) * gv * gv
                                    let wv = UnsafeRawPointer(wb + i).loadUnaligned(as: V.self)
                                    let update = V(repeating: stepSize) * mv / (vv.squareRoot() / V(repeating: sqrtCorrection2) + V(repeating: eps))
                                    UnsafeMutableRawPointer(mb + i).storeBytes(of: mv, as: V.self)
                                    UnsafeMutableRawPointer(vb + i).storeBytes(of: vv, as: V.self)
                                    UnsafeMutableRawPointer(wb + i).storeBytes(of: wv * V(repeating: decay) - update, as: V.self)
                                    i += 8
                                }
                                while i < range.upperBound {
                                    mp[i] = b1 * mp[i] + (1 - b1) * g[i]
                                    vp[i] = b2 * vp[i] + (1 - b2) * g[i] * g[i]
                                    w[i] = w[i] * decay - stepSize * mp[i] / (vp[i].squareRoot() / sqrtCorrection2 + eps)
                                    i += 1
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Restores the moments and step count saved by `stateTensors(names:)`.
    public func restore(step: Int, m: [[Float]], v: [[Float]]) {
        precondition(m.count == parameters.count && v.count == parameters.count, "Adam.restore: wrong number of moment buffers")
        self.step = step; self.m = m; self.v = v
    }
}

// MARK: - Exponential moving average of parameters

/// Shadow copy θ_ema ← decay·θ_ema + (1 − decay)·θ after every step (Polyak averaging); the
/// averaged weights are what generators sample with.
public final class ParameterEMA {
    public let decay: Float
    public var shadow: [[Float]]

    public init(_ module: Module, decay: Float = 0.999) {
        self.decay = decay
        shadow = module.namedTensors().map(\.tensor.data)
    }

    /// Parameters are averaged; buffers (running statistics) are copied.
    /// With `step` (1-based count of optimiser steps so far) the decay warms up as
    /// min(decay, (1 + step) / (10 + step)), so early averages are not dominated by the random
    /// initial weights; the step comes from the optimiser, so a resumed run averages identically.
    public func update(from module: Module, step: Int? = nil) {
        let d = step.map { min(decay, Float(1 + $0) / Float(10 + $0)) } ?? decay
        for (index, entry) in module.namedTensors().enumerated() {
            if !entry.isParameter { shadow[index] = entry.tensor.data; continue }
            entry.tensor.data.withUnsafeBufferPointer { w in
                shadow[index].withUnsafeMutableBufferPointer { s in
                    for i in s.indices { s[i] = d * s[i] + (1 - d) * w[i] }
                }
            }
        }
    }

    /// Writes the averaged values into `module` (same structure as the one averaged).
    public func copy(into module: Module) {
        for (entry, values) in zip(module.namedTensors(), shadow) { entry.tensor.data = values }
    }
}
