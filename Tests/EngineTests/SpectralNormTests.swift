import XCTest
@testable import Engine
import TestSupport
import Core

/// Spectral normalisation (Miyato et al. 2018): the power iteration finds the largest singular
/// value, and W/σ's pullback (with the σ term) matches finite differences.
final class SpectralNormTests: XCTestCase {
    override func setUp() { GradMode.isEnabled = true }

    /// W = 2·a bᵀ + c dᵀ with orthonormal a ⊥ c (R³) and b ⊥ d (R⁴): singular values 2 and 1.
    func knownMatrix() -> Tensor {
        let r = 1 / Float(2).squareRoot()
        let a: [Float] = [r, r, 0], c: [Float] = [r, -r, 0]
        let b: [Float] = [r, 0, r, 0], d: [Float] = [0, r, 0, -r]
        var w = [Float](repeating: 0, count: 12)
        for i in 0..<3 { for j in 0..<4 { w[i * 4 + j] = 2 * a[i] * b[j] + c[i] * d[j] } }
        return Tensor(shape: [3, 4], data: w)
    }

    func testPowerIterationConvergesToTheLargestSingularValue() {
        let w = knownMatrix()
        var u: [Float] = [0.3, -0.8, 0.52]
        var v: [Float] = []
        for _ in 0..<30 { (u, v) = spectralPowerIteration(w, u: u) }
        XCTAssertEqual(spectralSigma(w, u: u, v: v), 2, accuracy: 1e-4)
        // The normalised matrix has largest singular value 1 (and the second 1/2).
        let normalised = spectralNormalize(w, u: u, v: v)
        var u2: [Float] = [0.1, 0.9, -0.4], v2: [Float] = []
        for _ in 0..<30 { (u2, v2) = spectralPowerIteration(normalised, u: u2) }
        XCTAssertEqual(spectralSigma(normalised, u: u2, v: v2), 1, accuracy: 1e-4)
    }

    func testNormalisedWeightGradientMatchesFiniteDifferences() {
        // A tiny conv weight (OC 3 × C 2 × 2 × 2) viewed as 3 × 8; u, v after a few iterations, then fixed.
        let w = randomTensor([3, 2, 2, 2], seed: 21, scale: 0.5)
        var u: [Float] = [0.6, 0.0, 0.8], v: [Float] = []
        for _ in 0..<3 { (u, v) = spectralPowerIteration(w, u: u) }
        checkGradients("spectralNormalize", inputs: [w], tolerance: 1e-2, eps: 1e-3) { spectralNormalize($0[0], u: u, v: v) }
        // Through a convolution, as D uses it.
        let x = randomTensor([2, 2, 5, 5], seed: 22)
        checkGradients("conv2d(spectralNormalize)", inputs: [w], tolerance: 1e-2, eps: 1e-3) {
            conv2d(x, weight: spectralNormalize($0[0], u: u, v: v), stride: 2, padding: 1)
        }
    }

    func testGradientThroughSigmaIsNotNegligible() {
        // Without the σ term the pullback would be G/σ; the coupling term changes it by a lot for
        // a loss aligned with W (here L = ⟨W/σ, W⟩, whose exact gradient is orthogonal-ish to W).
        let w = randomTensor([4, 6], seed: 23)
        var u: [Float] = [0.5, 0.5, 0.5, 0.5], v: [Float] = []
        for _ in 0..<20 { (u, v) = spectralPowerIteration(w, u: u) }
        w.requiresGrad = true
        let target = Tensor(shape: w.shape, data: w.data)
        sum(mul(spectralNormalize(w, u: u, v: v), target)).backward()
        let sigma = spectralSigma(w, u: u, v: v)
        var difference: Float = 0, norm: Float = 0
        for i in 0..<w.count {
            let direct = target.data[i] / sigma
            difference += (w.grad![i] - direct) * (w.grad![i] - direct); norm += direct * direct
        }
        XCTAssertGreaterThan((difference / norm).squareRoot(), 0.1)
    }
}
