import Foundation

// MARK: - Manifests: one JSON object per line beside every batch of outputs
//
// `generate` writes a `ManifestRecord` per sample; `composite` a lesion record per placed lesion
// (Compositor's `LesionRecord`); `balance` a record per file. Sharded runs write
// manifest.shard-K-of-N.jsonl, which `manifest merge` reads as `ShardManifestLine`s.

/// One manifest line: which file, which sample, from what.
public struct ManifestRecord: Codable, Equatable {
    public var file: String
    public var `class`: String?
    public var seed: UInt64
    public var sample_index: Int
    public var model_id: String
    public var model_kind: String
    public var sampler: String?
    public var steps: Int?
    public var guidance: Double?
    /// Diffusion samplers' remaining settings (DDIM η, timestep spacing, steps offset, final ᾱ):
    /// with the fields above they fix every sample.
    public var eta: Double?
    public var spacing: String?
    public var steps_offset: Int?
    public var final_alpha_bar: String?
    public var source: String = "synthetic"

    public init(file: String, class className: String?, seed: UInt64, sample_index: Int, model_id: String, model_kind: String,
                sampler: String? = nil, steps: Int? = nil, guidance: Double? = nil, eta: Double? = nil, spacing: String? = nil,
                steps_offset: Int? = nil, final_alpha_bar: String? = nil) {
        self.file = file; self.class = className; self.seed = seed; self.sample_index = sample_index
        self.model_id = model_id; self.model_kind = model_kind; self.sampler = sampler; self.steps = steps; self.guidance = guidance
        self.eta = eta; self.spacing = spacing; self.steps_offset = steps_offset; self.final_alpha_bar = final_alpha_bar
    }
}

/// What `manifest merge` needs of any shard manifest line: the item it stands for (a generated
/// sample, or lesion `instance` of scan `index`), the files it names and the run it belongs to.
public struct ShardManifestLine: Decodable, Equatable {
    public var sample_index: Int?
    public var index: Int?
    public var instance: Int?
    /// Generated sample.
    public var file: String?
    /// Composite image and mask.
    public var image: String?
    public var mask: String?
    public var seed: UInt64?
    public var model_id: String?
    /// Composite: why scan `index` got no lesion (its one line then has no instance and no files).
    public var skipped: String?

    /// The item's key: [sample_index] (generate), [index, instance] (composite), [index, 0] for a
    /// composite scan that was skipped; nil when it is none of these.
    public var key: [Int]? {
        if let sample_index { return [sample_index] }
        if let index, let instance { return [index, instance] }
        if let index, skipped != nil { return [index, 0] }
        return nil
    }

    public var files: [String] { [file, image, mask].compactMap { $0 } }
}

/// Decodes a JSON-lines file into `T`s, keeping each line's text; blank lines are skipped. A line
/// that is not a JSON object of that shape is an error naming the file and the line.
public func decodeJSONLines<T: Decodable>(_ data: Data, as type: T.Type, file: String) throws -> [(text: String, value: T)] {
    let decoder = JSONDecoder()
    var out: [(text: String, value: T)] = []
    for (number, line) in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).enumerated()
        where !line.trimmingCharacters(in: .whitespaces).isEmpty {
        let bytes = Data(line.utf8)
        guard (try? JSONSerialization.jsonObject(with: bytes)) is [String: Any] else {
            throw MedSynthError(file: file, "line \(number + 1) is not a JSON object")
        }
        do {
            out.append((String(line), try decoder.decode(T.self, from: bytes)))
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            throw MedSynthError(file: file, "line \(number + 1): field '\(context.codingPath.map(\.stringValue).joined(separator: "."))' has the wrong type")
        } catch DecodingError.keyNotFound(let key, _) {
            throw MedSynthError(file: file, "line \(number + 1): field '\(key.stringValue)' is missing")
        } catch {
            throw MedSynthError(file: file, "line \(number + 1) is not a manifest line (\(error))")
        }
    }
    return out
}
