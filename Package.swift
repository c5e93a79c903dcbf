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
let environment = ProcessInfo.processInfo.environment
var kernels: [SwiftSetting] = environment["MEDSYNTH_UNCHECKED_ENGINE"] == "1"
    ? [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))] : optimise
// Engine's SIMD8 kernels (element-wise maps, norms, Winograd transforms) compile to AVX2/FMA when
// the building machine has them: medsynth is built from source on the machine that runs it, and
// baseline x86-64 splits every 8-lane vector into two SSE halves. MEDSYNTH_PORTABLE=1 turns it off
// (for a binary copied to other machines).
// On AMD Zen 4/5 (AVX-512 with full-width units) Engine is built for znver4 instead: the 16-lane
// kernels (Winograd transforms of two channels × 8 tiles, exp/SiLU, GroupNorm) then run one
// 512-bit instruction where AVX2 needs two (measured on a Zen 5 EPYC, CPU time, one thread:
// F(4×4,3×3) input transform 1.6–1.8× and SiLU 1.9× faster than the AVX2 build). Every feature
// znver4 may use is required in /proc/cpuinfo (sse4a marks AMD).
// Intel processors with AVX-512 (Skylake-SP and later) get skylake-avx512 for the same 16-lane
// kernels (issue 15, a 2-core Xeon with AVX-512: `MEDSYNTH_BENCH_CLOCK=cpu medsynth bench --threads 1`,
// alternating rounds against the haswell build: U-Net step 7.58 vs 7.18 images/s and forward 29.8 vs
// 25.1, held in a second and third set; the DCGAN step within noise over 13 pairs; the same bits).
// MEDSYNTH_AVX2_ONLY=1 keeps haswell.
let hostCPU = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
let zen4Features = [" avx512f", " avx512dq", " avx512bw", " avx512vl", " avx512cd", " avx512ifma", " avx512vbmi", " avx512_vbmi2",
                    " avx512_vnni", " avx512_bitalg", " avx512_vpopcntdq", " avx512_bf16", " gfni", " vaes", " vpclmulqdq", " sse4a"]
let skylakeAVX512Features = [" avx512f", " avx512dq", " avx512bw", " avx512vl", " avx512cd", " bmi1", " bmi2", " abm", " movbe",
                             " f16c", " adx", " popcnt", " rdseed", " clflushopt", " xsavec"]
if environment["MEDSYNTH_PORTABLE"] != "1", hostCPU.contains(" avx2"), hostCPU.contains(" fma") {
    let wide = environment["MEDSYNTH_AVX2_ONLY"] != "1"
    let cpu = wide && zen4Features.allSatisfy { hostCPU.contains($0) } ? "znver4"
        : wide && skylakeAVX512Features.allSatisfy { hostCPU.contains($0) } ? "skylake-avx512" : "haswell"
    kernels.append(.unsafeFlags(["-target-cpu", cpu], .when(configuration: .release)))
}

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
        .target(name: "Engine", dependencies: ["Core", "CBLAS"], swiftSettings: kernels),
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

        // In-process fuzz driver for every file reader (scripts/fuzz.sh); not part of the product.
        .executableTarget(name: "medsynth-fuzz", dependencies: ["Core", "Engine", "Layers", "Imaging", "MedicalFormats", "Evaluation", "Workflows"],
                          swiftSettings: optimise),

        // Temporary folders, the built binary and its runner, shared assertions.
        .target(name: "TestSupport", dependencies: ["Core", "Engine"], path: "Tests/TestSupport"),
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
