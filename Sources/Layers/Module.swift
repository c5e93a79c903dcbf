import Core
import Engine

// MARK: - Modules
//
// A module owns tensors under stable, PyTorch `state_dict`-style names ("net.0.weight",
// "down.1.res.c1.bias"), so weights move both ways through safetensors files.

/// One named tensor of a module: a trainable parameter or a buffer (e.g. BatchNorm running stats).
public struct NamedTensor {
    public let name: String
    public let tensor: Tensor
    public let isParameter: Bool
    /// Stored as an integer in PyTorch (BatchNorm's num_batches_tracked): written as I64.
    public let isInteger: Bool

    public init(_ name: String, _ tensor: Tensor, isParameter: Bool = true, isInteger: Bool = false) {
        self.name = name; self.tensor = tensor; self.isParameter = isParameter; self.isInteger = isInteger
    }

    func prefixed(_ prefix: String) -> NamedTensor {
        NamedTensor(prefix.isEmpty ? name : "\(prefix).\(name)", tensor, isParameter: isParameter, isInteger: isInteger)
    }
}

public protocol Module: AnyObject {
    /// Every parameter and buffer, in a fixed order, with state_dict names.
    func namedTensors() -> [NamedTensor]
    /// Switches BatchNorm-like layers between batch statistics (true) and running averages.
    func setTraining(_ training: Bool)
}

extension Module {
    public func setTraining(_ training: Bool) {}

    /// Trainable parameters, in `namedTensors()` order.
    public func parameters() -> [Tensor] { namedTensors().filter(\.isParameter).map(\.tensor) }
    public func namedParameters() -> [NamedTensor] { namedTensors().filter(\.isParameter) }
    public var parameterCount: Int { parameters().reduce(0) { $0 + $1.count } }

    public func zeroGrad() { for p in parameters() { p.zeroGrad() } }

    /// Copies values from `state` (name → values) into this module; every name must be present
    /// with the right number of values, and no extra model tensor may be missing.
    public func load(_ state: [String: (shape: [Int], values: [Float])], source: String, prefix: String = "") throws {
        for entry in namedTensors() {
            let key = prefix.isEmpty ? entry.name : "\(prefix).\(entry.name)"
            guard let found = state[key] else {
                throw MedSynthError(file: source, "missing tensor '\(key)' — the checkpoint is from another model or configuration")
            }
            guard found.shape == entry.tensor.shape || (found.shape.isEmpty && entry.tensor.count == 1) else {
                throw MedSynthError(file: source, "tensor '\(key)' has shape \(found.shape) but the model expects \(entry.tensor.shape) — the checkpoint is from another model or configuration")
            }
            entry.tensor.data = found.values
        }
    }

    /// Copies every tensor value from another module of the same structure.
    public func copyValues(from other: Module) {
        for (a, b) in zip(namedTensors(), other.namedTensors()) {
            precondition(a.name == b.name && a.tensor.shape == b.tensor.shape, "copyValues: \(a.name) vs \(b.name)")
            a.tensor.data = b.tensor.data
        }
    }
}

/// Collects children's tensors under their attribute names.
public func gather(_ children: [(String, Module)]) -> [NamedTensor] {
    children.flatMap { name, child in child.namedTensors().map { $0.prefixed(name) } }
}

// MARK: - Initialisation

/// PyTorch's default for Conv and Linear layers (kaiming_uniform with a = √5): U(−1/√fanIn, 1/√fanIn).
func defaultUniform(_ shape: [Int], fanIn: Int, stream: inout RandomStream) -> Tensor {
    let bound = 1 / Float(fanIn).squareRoot()
    var values = [Float](repeating: 0, count: shape.reduce(1, *))
    for i in values.indices { values[i] = stream.uniform(-bound, bound) }
    return Tensor(shape: shape, data: values, requiresGrad: true)
}
