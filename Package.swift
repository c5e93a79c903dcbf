// swift-tools-version:6.0
import Foundation
import PackageDescription

// Release builds matter here: numeric code is 10-50x slower in debug.
// Every module that reads files (MedicalFormats, Imaging, Layers' safetensors, Evaluation's NPY,
// Workflows' manifests) and everything else is built with the normal checked -O: bounds and
// overflow checks stay on, so a parser bug stops with a trap instead of reading garbage.
// Only Engine's tensor kernels use -Ounchecked (`kernels`), where it measured faster
// (see the issue 16 note); MEDSYNTH_CHECKED_ALL=1 builds Engine checked too (fuzzing, measuring).
let optimise: [SwiftSetting] = [.unsafeFlags(["-wmo"], .when(configuration: .release))]
let kernels: [SwiftSetting] = ProcessInfo.processInfo.environment["MEDSYNTH_CHECKED_ALL"] == "1"
    ? optimise : [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))]

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
