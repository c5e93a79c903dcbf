/// medsynth's version, printed by `medsynth --version` and recorded in every manifest.
public enum MedSynthVersion {
    public static let current = "0.1.0"
}
