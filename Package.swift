// swift-tools-version:6.0
import Foundation
import PackageDescription

// Release builds matter here: numeric code is 10-50x slower in debug.
// Every module is built with the normal checked -O: bounds and overflow checks stay on, so a bug
// in a parser of untrusted files (MedicalFormats, Imaging, Layers' safetensors, Evaluation's NPY,
// Workflows' manifests) stops with a trap instead of reading garbage. -Ounchecked was measured on
// Engine's kernels (issue 16: `medsynth bench` dcgan64_train_step_b64 and unet64_train_step_b32,
// Engine checked vs unchecked back to back, 3 rounds) and gave no measurable gain (the time is in
// OpenBLAS sgemm); MEDSYNTH_UNCHECKED_ENGINE=1 builds Engine with -Ounchecked to measure again.
let optimise: [SwiftSetting] = [.unsafeFlags(["-wmo"], .when(configuration: .release))]
let kernels: [SwiftSetting] = ProcessInfo.processInfo.environment["MEDSYNTH_UNCHECKED_ENGINE"] == "1"
    ? [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))] : optimise

let package = Package(
    name: "medsynth",
    products: [
        .executable(name: "medsynth", targets: ["medsynth"]),
        .library(name: "MedSynthKit", targets: ["Engine", "Layers", "Imaging", "MedicalFormats", "Generators", "Compositor", "Evaluation", "Workflows"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // System libraries: OpenBLAS (cblas + LAPACK), zlib; libpng/libjpeg through a thin C shim
        // that owns their setjmp/longjmp error handling.
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS"),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        .target(name: "CImageCodecs",
                cSettings: [.unsafeFlags(["-O2"])],
                linkerSettings: [.linkedLibrary("png"), .linkedLibrary("jpeg")]),

        .target(name: "Engine", dependencies: ["CBLAS"], swiftSettings: kernels),
        .target(name: "Layers", dependencies: ["Engine"], swiftSettings: optimise),
        .target(name: "MedicalFormats", dependencies: ["CZlib", "CImageCodecs", "Engine"], swiftSettings: optimise),
        .target(name: "Imaging", dependencies: ["CImageCodecs", "MedicalFormats", "Engine"], swiftSettings: optimise),
        .target(name: "Generators", dependencies: ["Engine", "Layers", "Imaging"], swiftSettings: optimise),
        .target(name: "Compositor", dependencies: ["Engine", "Imaging"], swiftSettings: optimise),
        .target(name: "Evaluation", dependencies: ["Engine", "Layers", "Imaging", "CBLAS"], swiftSettings: optimise),
        .target(name: "Workflows", dependencies: ["Engine", "Layers", "Imaging", "Generators", "Compositor", "Evaluation"], swiftSettings: optimise),
        .executableTarget(name: "medsynth", dependencies: [
            "Engine", "Layers", "Imaging", "MedicalFormats", "Generators", "Compositor", "Evaluation", "Workflows",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: optimise),

        // In-process fuzz driver for every file reader (scripts/fuzz.sh); not part of the product.
        .executableTarget(name: "medsynth-fuzz", dependencies: ["Engine", "Layers", "Imaging", "MedicalFormats", "Evaluation", "Workflows"],
                          swiftSettings: optimise),

        .testTarget(name: "EngineTests", dependencies: ["Engine"]),
        .testTarget(name: "LayersTests", dependencies: ["Engine", "Layers"], resources: [.copy("Fixtures")]),
        .testTarget(name: "ImagingTests", dependencies: ["Imaging"], resources: [.copy("Fixtures")]),
        .testTarget(name: "MedicalFormatsTests", dependencies: ["MedicalFormats", "Imaging"], resources: [.copy("Fixtures")]),
        .testTarget(name: "GeneratorsTests", dependencies: ["Generators", "Layers", "Engine", "Imaging"], resources: [.copy("Fixtures")]),
        .testTarget(name: "CompositorTests", dependencies: ["Compositor", "Imaging"], resources: [.copy("Fixtures")]),
        .testTarget(name: "EvaluationTests", dependencies: ["Evaluation", "Imaging"], resources: [.copy("Fixtures")]),
        .testTarget(name: "WorkflowsTests", dependencies: ["Workflows"]),
        .testTarget(name: "CLITests", dependencies: ["medsynth"]),
    ],
    swiftLanguageModes: [.v5]
)
