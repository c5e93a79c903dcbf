import Foundation

/// FNV-1a 64 (Fowler–Noll–Vo): a short, stable, non-cryptographic fingerprint of bytes, used for
/// model ids in manifests and for per-class seeds. The same on every machine and release.
public enum FNV1a64 {
    static let offsetBasis: UInt64 = 0xcbf2_9ce4_8422_2325
    static let prime: UInt64 = 0x100_0000_01b3

    public static func hash(_ bytes: some ContiguousBytes) -> UInt64 {
        bytes.withUnsafeBytes { raw in raw.reduce(offsetBasis) { ($0 ^ UInt64($1)) &* prime } }
    }

    public static func hash(_ text: String) -> UInt64 { hash(Array(text.utf8)) }
}
