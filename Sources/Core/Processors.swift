import Foundation

/// How many CPUs this process may run on: the online CPUs, narrowed by the CPU affinity mask
/// (taskset, SLURM's and Kubernetes' cpusets) and by a cgroup v1 or v2 CPU quota (`docker --cpus`,
/// SLURM with cgroup limits). `sysconf(_SC_NPROCESSORS_ONLN)` and Foundation's
/// `activeProcessorCount` count every online CPU of the node, so a one-CPU array task on a 64-core
/// node started 64 workers on its one CPU, 63 of them spinning between loops.
public enum AvailableProcessors {
    public static let count: Int = max(1, [onlineCount, affinityCount, cgroupQuotaCount].compactMap { $0 }.min()!)

    /// Where the count comes from, for `bench`'s header: "2 CPUs (2 online, affinity 2, no cgroup quota)".
    public static var description: String {
        let affinity = affinityCount.map { "affinity \($0)" } ?? "affinity unknown"
        let quota = cgroupQuotaCount.map { "cgroup quota \($0)" } ?? "no cgroup quota"
        return "\(count) CPU\(count == 1 ? "" : "s") (\(onlineCount) online, \(affinity), \(quota))"
    }

    static let affinityCount: Int? = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)).flatMap(allowedCount(procStatus:))
    static let cgroupQuotaCount: Int? = cgroupQuota()

    static var onlineCount: Int {
        #if canImport(Glibc)
        return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        #else
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
        #endif
    }

    /// CPUs in the `Cpus_allowed_list:` line of /proc/self/status ("0-3,8,10-11" → 7); nil if absent or unreadable.
    public static func allowedCount(procStatus: String) -> Int? {
        guard let line = procStatus.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") }) else { return nil }
        return cpuListCount(String(line.dropFirst("Cpus_allowed_list:".count)))
    }

    /// Size of a kernel CPU list ("0-3,8" → 5); nil for anything malformed.
    public static func cpuListCount(_ list: String) -> Int? {
        var total = 0
        for part in list.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ",") {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
            switch bounds.count {
            case 1:
                guard bounds[0] != nil else { return nil }
                total += 1
            case 2:
                guard let low = bounds[0], let high = bounds[1], low <= high else { return nil }
                total += high - low + 1
            default:
                return nil
            }
        }
        return total > 0 ? total : nil
    }

    /// CPUs allowed by a quota and period ("150000 100000" → 2, rounded up; "max 100000" or v1's
    /// "-1 100000" → nil).
    public static func quotaCount(cpuMax: String) -> Int? {
        let fields = cpuMax.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard fields.count >= 2, let quota = Double(fields[0]), let period = Double(fields[1]),
              quota > 0, period > 0 else { return nil }
        return max(1, Int((quota / period).rounded(.up)))
    }

    /// The smallest quota on the way from this process's cgroup up to the root (a parent's limit holds
    /// for its children too): cgroup v2's `cpu.max` under the "0::/path" line of /proc/self/cgroup,
    /// or v1's `cpu.cfs_quota_us` / `cpu.cfs_period_us` under the cpu controller's line.
    static func cgroupQuota() -> Int? {
        let lines = ((try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8)) ?? "").split(separator: "\n")
        func ancestry(root: String, path: Substring) -> [String] {
            var directory = root, directories = [root]
            for component in path.split(separator: "/") where component != ".." {
                directory += "/" + component
                directories.append(directory)
            }
            return directories
        }
        func read(_ file: String) -> String? { try? String(contentsOfFile: file, encoding: .utf8) }
        var quotas: [Int] = []
        let v2Path = lines.first(where: { $0.hasPrefix("0::") }).map { $0.dropFirst(3) } ?? ""
        for directory in ancestry(root: "/sys/fs/cgroup", path: v2Path) {
            if let quota = read(directory + "/cpu.max").flatMap(quotaCount(cpuMax:)) { quotas.append(quota) }
        }
        // v1: "4:cpu,cpuacct:/path", mounted at /sys/fs/cgroup/cpu (or cpu,cpuacct).
        if let line = lines.first(where: { $0.split(separator: ":", maxSplits: 2).dropFirst().first?.split(separator: ",").contains("cpu") == true }) {
            let path = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false).last ?? ""
            for directory in ancestry(root: "/sys/fs/cgroup/cpu", path: path) {
                if let quota = read(directory + "/cpu.cfs_quota_us"), let period = read(directory + "/cpu.cfs_period_us"),
                   let count = quotaCount(cpuMax: quota.trimmingCharacters(in: .whitespacesAndNewlines) + " " + period) {
                    quotas.append(count)
                }
            }
        }
        return quotas.min()
    }
}
