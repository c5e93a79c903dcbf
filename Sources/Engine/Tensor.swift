import Core
// MARK: - Tensor and reverse-mode autodiff
//
// A Tensor is a dense Float32 array (row-major; images are NCHW) that remembers, when gradients
// are on, the op that made it: its parents and a pullback that turns its gradient into theirs.
// `backward()` runs the pullbacks in reverse topological order (micrograd / Swift for TensorFlow
// style tape). Gradients accumulate with `+=` so a tensor used twice gets both contributions.

/// Global switch for building the autodiff graph; off inside `withNoGrad`.
public enum GradMode {
    nonisolated(unsafe) public static var isEnabled = true
}

/// Runs `body` without recording any graph: inference allocates only the values it needs.
@discardableResult
public func withNoGrad<T>(_ body: () throws -> T) rethrows -> T {
    let saved = GradMode.isEnabled
    GradMode.isEnabled = false
    defer { GradMode.isEnabled = saved }
    return try body()
}

public final class Tensor {
    public let shape: [Int]
    /// The values, row-major. Mutable so optimisers can update parameters in place.
    public var data: [Float]
    /// Gradient of the loss w.r.t. this tensor, allocated on first accumulation.
    public var grad: [Float]?
    /// True for parameters and for every tensor computed from one while gradients are on.
    public var requiresGrad: Bool
    /// Set only on tensors an op produced with gradients on.
    var parents: [Tensor] = []
    var pullback: ((Tensor) -> Void)?

    public init(shape: [Int], data: [Float], requiresGrad: Bool = false) {
        precondition(shape.reduce(1, *) == data.count,
                     "Tensor: shape \(shape) needs \(shape.reduce(1, *)) values, got \(data.count)")
        self.shape = shape
        self.data = data
        self.requiresGrad = requiresGrad
    }

    public convenience init(zeros shape: [Int], requiresGrad: Bool = false) {
        self.init(shape: shape, data: [Float](repeating: 0, count: shape.reduce(1, *)), requiresGrad: requiresGrad)
    }

    public convenience init(filled value: Float, shape: [Int], requiresGrad: Bool = false) {
        self.init(shape: shape, data: [Float](repeating: value, count: shape.reduce(1, *)), requiresGrad: requiresGrad)
    }

    /// Standard-normal values scaled by `std`, drawn from `stream`.
    public convenience init(randomNormal shape: [Int], std: Float = 1, stream: inout RandomStream, requiresGrad: Bool = false) {
        var values = [Float](repeating: 0, count: shape.reduce(1, *))
        values.withUnsafeMutableBufferPointer { stream.fillNormal($0, std: std) }
        self.init(shape: shape, data: values, requiresGrad: requiresGrad)
    }

    public var count: Int { data.count }
    public var rank: Int { shape.count }
    /// The single value of a one-element tensor (e.g. a loss).
    public var scalar: Float {
        precondition(data.count == 1, "Tensor.scalar: shape \(shape) has \(data.count) values")
        return data[0]
    }

    /// A tensor that shares these values but is cut from the graph (PyTorch's `detach`).
    public func detached() -> Tensor { Tensor(shape: shape, data: data) }

    /// Adds `delta` into `grad`, allocating it on first use.
    @inlinable
    public func accumulateGrad(_ delta: UnsafeBufferPointer<Float>) {
        precondition(delta.count == data.count, "accumulateGrad: \(delta.count) values for shape \(shape)")
        // Split across workers: activations' gradients are MBs, and a serial copy or add here left
        // the second core idle (the U-Net's `backward add` ran at the same speed on 1 and 2 threads).
        guard let source = delta.baseAddress, !delta.isEmpty else {
            if grad == nil { grad = [] }
            return
        }
        if grad == nil {
            grad = [Float](unsafeUninitializedCapacity: delta.count) { buffer, initialised in
                let target = buffer.baseAddress!
                Parallel.forRanges(delta.count) { range in
                    (target + range.lowerBound).initialize(from: source + range.lowerBound, count: range.count)
                }
                initialised = delta.count
            }
            return
        }
        grad!.withUnsafeMutableBufferPointer { g in
            let target = g.baseAddress!
            Parallel.forRanges(g.count) { range in vectorAdd(target + range.lowerBound, source + range.lowerBound, range.count) }
        }
    }

    /// Gradient buffer, zero-filled on first use, for pullbacks that write into it directly.
    public func withGradBuffer<R>(_ body: (UnsafeMutableBufferPointer<Float>) -> R) -> R {
        if grad == nil {
            var zeros = uninitializedFloats(data.count)
            zeros.withUnsafeMutableBufferPointer { z in
                let base = z.baseAddress
                Parallel.forRanges(z.count) { range in (base! + range.lowerBound).initialize(repeating: 0, count: range.count) }
            }
            grad = zeros
        }
        return grad!.withUnsafeMutableBufferPointer { body($0) }
    }

    /// The gradient buffer for a pullback that can either overwrite it or add to it: the first
    /// gradient gets an uninitialised buffer and `accumulate` false (the body must write every
    /// element), later ones the existing buffer and `accumulate` true. Saves the zero fill and
    /// the extra pass of `withGradBuffer` for kernels with an overwrite mode.
    public func withGradDestination<R>(_ body: (UnsafeMutableBufferPointer<Float>, _ accumulate: Bool) -> R) -> R {
        if grad == nil {
            grad = uninitializedFloats(data.count)
            return grad!.withUnsafeMutableBufferPointer { body($0, false) }
        }
        return grad!.withUnsafeMutableBufferPointer { body($0, true) }
    }

    public func zeroGrad() { grad = nil }

    /// Makes the result of an op: records parents and pullback only when some parent needs gradients.
    /// Ops outside the engine use it too; the pullback reads `result.grad` and accumulates into parents.
    public static func makeResult(shape: [Int], data: [Float], parents: [Tensor], op: String = #function,
                                  pullback: @escaping (Tensor) -> Void) -> Tensor {
        let needsGrad = GradMode.isEnabled && parents.contains { $0.requiresGrad }
        let out = Tensor(shape: shape, data: data, requiresGrad: needsGrad)
        if needsGrad {
            out.parents = parents
            out.pullback = Profiler.isEnabled ? { y in Profiler.measure("backward " + op) { pullback(y) } } : pullback
        }
        return out
    }

    /// Reverse-mode sweep from this scalar: d(self)/d(self) = 1, then every pullback once, in
    /// reverse topological order. Intermediate gradients and the graph are released afterwards.
    public func backward() {
        precondition(data.count == 1, "backward(): needs a scalar loss, got shape \(shape)")
        precondition(requiresGrad, "backward(): the loss does not depend on any parameter")
        var order: [Tensor] = []
        var visited = Set<ObjectIdentifier>()
        // Iterative DFS: U-Net graphs are deep enough to make recursion a risk on small stacks.
        var stack: [(Tensor, Bool)] = [(self, false)]
        while let (node, expanded) = stack.popLast() {
            if expanded { order.append(node); continue }
            if visited.contains(ObjectIdentifier(node)) { continue }
            visited.insert(ObjectIdentifier(node))
            stack.append((node, true))
            for p in node.parents where p.requiresGrad && !visited.contains(ObjectIdentifier(p)) {
                stack.append((p, false))
            }
        }
        grad = [1]
        for node in order.reversed() {
            guard let pullback = node.pullback, node.grad != nil else { continue }
            pullback(node)
            // Free what the sweep no longer needs; leaves (parameters) keep their gradients.
            node.pullback = nil
            node.parents = []
            node.grad = nil
        }
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let preview = data.prefix(8).map { String($0) }.joined(separator: ", ")
        return "Tensor(shape: \(shape), [\(preview)\(data.count > 8 ? ", ..." : "")])"
    }
}

/// Fails with a message naming the op and the shapes involved.
@inlinable
func checkShape(_ condition: Bool, _ op: String, _ detail: @autoclosure () -> String) {
    if !condition { preconditionFailure("\(op): \(detail())") }
}
