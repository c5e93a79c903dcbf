import Foundation
import Core
import Engine
import Layers

// MARK: - Checkpoints and run folders
//
// A training run folder holds:
//   run.json                     what was asked (data, options, seed) — written once
//   checkpoints/latest.safetensors  full training state: model, EMA, optimiser moments, step
//   checkpoints/step-NNNNNN.safetensors  the same, kept every --checkpoint-every steps
//   model.safetensors            the sampling weights only (EMA), what `generate` loads
//   samples/step-NNNNNN.png      sample grids
//   losses.csv                   one line per step
// Every file is written to a temporary name and renamed.

/// Which generator a checkpoint holds; stored as metadata "medsynth.kind".
public enum ModelKind: String, Codable {
    case dcgan
    case diffusion
    case vae
    /// A U-Net on a VAE's latents; the VAE's weights are embedded under "vae.".
    case latentDiffusion = "latent-diffusion"
    /// A DCGAN on a VAE's latents; the VAE's weights are embedded under "vae.".
    case latentGAN = "latent-gan"
}

public enum CheckpointKey {
    public static let kind = "medsynth.kind"
    public static let config = "medsynth.config"
    public static let training = "medsynth.training"
    public static let step = "medsynth.step"
    public static let version = "medsynth.version"
    public static let seed = "medsynth.seed"
}

func jsonString<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}

func decodeJSON<T: Decodable>(_ type: T.Type, _ text: String?, file: String, what: String) throws -> T {
    guard let text, let value = try? JSONDecoder().decode(T.self, from: Data(text.utf8)) else {
        throw MedSynthError(file: file, "missing or unreadable \(what) — not a medsynth checkpoint of this kind")
    }
    // Configs are checked here, before any model is built from them (ConfigValidation.swift).
    if let checked = value as? CheckpointValidated {
        do { try checked.validate() } catch let error as MedSynthError {
            throw MedSynthError(file: file, "invalid \(what): \(error.message)")
        }
    }
    return value
}

/// Optimiser state as tensors "optim.<name>.m.<i>", "optim.<name>.v.<i>" and metadata step.
func optimizerEntries(_ optimizer: Adam, name: String) -> ([SafetensorsEntry], [String: String]) {
    var entries: [SafetensorsEntry] = []
    for (i, p) in optimizer.parameters.enumerated() {
        entries.append(SafetensorsEntry(name: "optim.\(name).m.\(i)", shape: p.shape, values: optimizer.m[i]))
        entries.append(SafetensorsEntry(name: "optim.\(name).v.\(i)", shape: p.shape, values: optimizer.v[i]))
    }
    return (entries, ["optim.\(name).step": String(optimizer.step)])
}

func restoreOptimizer(_ optimizer: Adam, name: String, from file: SafetensorsFile, source: String) throws {
    var m: [[Float]] = [], v: [[Float]] = []
    for (i, p) in optimizer.parameters.enumerated() {
        guard let mi = file.tensors["optim.\(name).m.\(i)"], let vi = file.tensors["optim.\(name).v.\(i)"], mi.values.count == p.count, vi.values.count == p.count else {
            throw MedSynthError(file: source, "optimiser state for '\(name)' is missing or does not fit the model — cannot resume from it")
        }
        m.append(mi.values); v.append(vi.values)
    }
    guard let stepText = file.metadata["optim.\(name).step"], let step = Int(stepText) else {
        throw MedSynthError(file: source, "optimiser step for '\(name)' is missing — cannot resume from it")
    }
    optimizer.restore(step: step, m: m, v: v)
}

/// EMA shadow values as "ema.<name>" tensors, in the module's order.
func emaEntries(_ ema: ParameterEMA, module: Module) -> [SafetensorsEntry] {
    zip(module.namedTensors(), ema.shadow).map { entry, values in
        SafetensorsEntry(name: "ema.\(entry.name)", shape: entry.tensor.shape, values: values, dtype: entry.isInteger ? .i64 : .f32)
    }
}

func restoreEMA(_ ema: ParameterEMA, module: Module, from file: SafetensorsFile, source: String) throws {
    for (i, entry) in module.namedTensors().enumerated() {
        guard let found = file.tensors["ema.\(entry.name)"], found.values.count == entry.tensor.count else {
            throw MedSynthError(file: source, "EMA weights for '\(entry.name)' are missing or do not fit — checkpoint from another model?")
        }
        ema.shadow[i] = found.values
    }
}

/// Paths inside a run folder.
public struct RunFolder {
    public let url: URL
    public init(_ url: URL) { self.url = url }
    public var runFile: URL { url.appendingPathComponent("run.json") }
    public var checkpoints: URL { url.appendingPathComponent("checkpoints") }
    public var latestCheckpoint: URL { checkpoints.appendingPathComponent("latest.safetensors") }
    public var model: URL { url.appendingPathComponent("model.safetensors") }
    public var samples: URL { url.appendingPathComponent("samples") }
    public var losses: URL { url.appendingPathComponent("losses.csv") }
    public func checkpoint(step: Int) -> URL { checkpoints.appendingPathComponent(String(format: "step-%06d.safetensors", step)) }
    public func sampleGrid(step: Int) -> URL { samples.appendingPathComponent(String(format: "step-%06d.png", step)) }

    public func create() throws {
        for folder in [url, checkpoints, samples] {
            do { try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true) }
            catch { throw MedSynthError(file: folder.path, "cannot create the folder (\(error.localizedDescription))") }
        }
    }
}

/// Resolves `--model RUN|CKPT`: a run folder means its model.safetensors.
public func resolveModelFile(_ path: String) throws -> URL {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
        throw MedSynthError(file: path, "no such model file or run folder")
    }
    if isDirectory.boolValue {
        let model = RunFolder(URL(fileURLWithPath: path)).model
        guard FileManager.default.fileExists(atPath: model.path) else {
            throw MedSynthError(file: path, "run folder has no model.safetensors yet (no checkpoint written)")
        }
        return model
    }
    return URL(fileURLWithPath: path)
}

/// A short, stable id of a model file's contents (FNV-1a 64 over its bytes), for manifests.
public func modelIdentifier(of url: URL) throws -> String {
    String(format: "%016llx", FNV1a64.hash(try Data(contentsOf: url)))
}
