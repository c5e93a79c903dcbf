// swift-tools-version:6.0
import PackageDescription

// Release builds matter here: numeric code is 10-50x slower in debug.
let optimise: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))]

let package = Package(
    name: "medsynth",
    products: [
        .executable(name: "medsynth", targets: ["medsynth"]),
        .library(name: "MedSynthKit", targets: ["Core", "Engine", "Layers", "Imaging", "MedicalFormats", "Generators", "Compositor", "Evaluation", "Workflows"]),
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

        // What every module uses and is not tensor maths: errors, atomic files, progress, shards,
        // random streams, hashing, the image type, manifest records.
        .target(name: "Core", swiftSettings: optimise),
        .target(name: "Engine", dependencies: ["Core", "CBLAS"], swiftSettings: optimise),
        .target(name: "Layers", dependencies: ["Core", "Engine"], swiftSettings: optimise),
        .target(name: "MedicalFormats", dependencies: ["CZlib", "Core"], swiftSettings: optimise),
        .target(name: "Imaging", dependencies: ["CImageCodecs", "MedicalFormats", "Core"], swiftSettings: optimise),
        .target(name: "Generators", dependencies: ["Core", "Engine", "Layers", "Imaging"], swiftSettings: optimise),
        .target(name: "Compositor", dependencies: ["Core", "Engine", "Imaging"], swiftSettings: optimise),
        .target(name: "Evaluation", dependencies: ["Core", "Engine", "Layers", "Imaging", "CBLAS"], swiftSettings: optimise),
        .target(name: "Workflows", dependencies: ["Core", "Engine", "Layers", "Imaging", "Generators", "Compositor", "Evaluation"], swiftSettings: optimise),
        .executableTarget(name: "medsynth", dependencies: [
            "Core", "Engine", "Layers", "Imaging", "MedicalFormats", "Generators", "Compositor", "Evaluation", "Workflows",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: optimise),

        // Temporary folders, the built binary and its runner, shared assertions.
        .target(name: "TestSupport", dependencies: ["Core"], path: "Tests/TestSupport"),
        .testTarget(name: "EngineTests", dependencies: ["Core", "Engine", "TestSupport"]),
        .testTarget(name: "LayersTests", dependencies: ["Core", "Engine", "Layers", "TestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "ImagingTests", dependencies: ["Core", "Imaging", "TestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "MedicalFormatsTests", dependencies: ["Core", "MedicalFormats", "Imaging", "TestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "GeneratorsTests", dependencies: ["Core", "Generators", "Layers", "Engine", "Imaging", "TestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "CompositorTests", dependencies: ["Core", "Compositor", "Imaging", "TestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "EvaluationTests", dependencies: ["Core", "Evaluation", "Imaging", "TestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "WorkflowsTests", dependencies: ["Core", "Workflows", "Evaluation", "TestSupport"]),
        .testTarget(name: "CLITests", dependencies: ["Core", "medsynth", "TestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)
