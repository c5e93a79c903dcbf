import XCTest
import Engine
import Core

/// Central finite differences (shared by every test target that checks pullbacks) for every input of `f`, against the autodiff gradients of
/// loss = Σ f(inputs) ⊙ r for a fixed random r (so every output element's pullback is exercised).
public func checkGradients(_ name: String, inputs: [Tensor], tolerance: Float = 2e-2, eps: Float = 1e-2,
                    file: StaticString = #filePath, line: UInt = #line, _ f: ([Tensor]) -> Tensor) {
    var stream = RandomStream(seed: 99)
    let probe = f(inputs)
    let weights = (0..<probe.count).map { _ in stream.normal() }
    func loss() -> Double {
        let y = withNoGrad { f(inputs) }
        var s = 0.0
        for i in 0..<y.count { s += Double(y.data[i]) * Double(weights[i]) }
        return s
    }
    for t in inputs { t.requiresGrad = true; t.zeroGrad() }
    let y = f(inputs)
    let r = Tensor(shape: y.shape, data: weights)
    sum(mul(y, r)).backward()
    for (index, t) in inputs.enumerated() {
        let analytic = t.grad ?? [Float](repeating: 0, count: t.count)
        var numeric = [Float](repeating: 0, count: t.count)
        for i in 0..<t.count {
            let saved = t.data[i]
            t.data[i] = saved + eps; let up = loss()
            t.data[i] = saved - eps; let down = loss()
            t.data[i] = saved
            numeric[i] = Float((up - down) / Double(2 * eps))
        }
        var diff: Float = 0, norm: Float = 0
        for i in 0..<t.count { diff += (analytic[i] - numeric[i]) * (analytic[i] - numeric[i]); norm += numeric[i] * numeric[i] }
        let relative = (diff / max(norm, 1e-12)).squareRoot()
        XCTAssert(relative < tolerance, "\(name): input \(index) \(t.shape) gradient relative error \(relative)", file: file, line: line)
        XCTAssert(norm > 0, "\(name): input \(index) has an all-zero numeric gradient; the check would be vacuous", file: file, line: line)
    }
}

public func randomTensor(_ shape: [Int], seed: UInt64, scale: Float = 1) -> Tensor {
    var s = RandomStream(seed: seed)
    return Tensor(randomNormal: shape, std: scale, stream: &s)
}
