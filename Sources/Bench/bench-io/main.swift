// bench-io: throughput of our .npz writer/reader against numpy's
// savez_compressed/load on the same float32 array (random normal from
// SeededRNG). Run in release: `swift run -c release bench-io`. Prints
// wall-clock and process-CPU throughput (the latter stays meaningful on a
// machine shared with other jobs); writes include our fsync.
import ArgumentParser
import CLIKit
import Foundation
import SeededRNG
import TensorIO

struct BenchIO: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-io",
        abstract: "Write and read a float32 .npz artifact with TensorIO and with numpy; print MB/s and ratios.",
        discussion: exitStatusHelp,
        version: toolVersion)

    @Option(help: "Array size in MiB (float32, random normal).")
    var mib: Int = 256

    @Option(help: "Comma-separated write modes: 'default' (NPZ.write defaults: level \(NPZ.defaultCompressionLevel), incompressible entries stored) or a deflate level 0-9 applied to every entry (0 = stored).")
    var levels: String = "default,\(NPZ.defaultCompressionLevel)"

    @Option(name: .customLong("repeat"), help: "Repetitions per measurement; the best time is kept.")
    var repeats: Int = 1

    @Option(help: "Folder for the temporary files.")
    var dir: String = NSTemporaryDirectory()

    @Option(help: "numpy benchmark script.")
    var script: String = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("bench/npz_bench.py").path

    @Flag(help: "Skip the numpy comparison.")
    var noNumpy = false

    @Option(help: "Seed of the data.")
    var seed: UInt64 = 1

    func validate() throws {
        guard mib > 0 else { throw ValidationError("--mib must be positive") }
        guard repeats > 0 else { throw ValidationError("--repeat must be positive") }
    }

    func run() throws {
        // -1 stands for the writer's defaults.
        let lv = try levels.split(separator: ",").map { s -> Int in
            let t = s.trimmingCharacters(in: .whitespaces)
            if t == "default" { return -1 }
            guard let v = Int(t), (0...9).contains(v) else { throw ValidationError("bad level '\(s)'") }
            return v
        }
        let n = mib << 18
        let t0 = now()
        var rng = RNG(seed: seed)
        let values = [Float](unsafeUninitializedCapacity: n) { buf, c in
            for i in 0..<n { buf[i] = Float(rng.normal()) }
            c = n
        }
        var art = Artifact(meta: ArtifactMeta(stage: "bench-io", parameters: ["mib": .number(Double(mib))], seed: seed))
        art.set("x", NDArray(values, shape: [n]))
        print(String(format: "data: %d MiB float32 random normal (seed %llu), generated in %.2f s", mib, seed, now() - t0))

        let mb = Double(n * 4) / Double(1 << 20)
        var ours: [Int: (w: Double, r: Double, wc: Double, rc: Double)] = [:]
        var keep: String? = nil
        for level in lv {
            let label = level < 0 ? "default" : "level \(level)"
            let path = dir + "/bench-io-\(getpid())-L\(level).npz"
            var bw = Double.infinity, br = Double.infinity, bwc = Double.infinity, brc = Double.infinity
            for _ in 0..<repeats {
                var t = now(), c = cpu()
                if level < 0 { try NPZ.write(art, to: path) } else {
                    try NPZ.write(art, to: path, compressionLevel: level, storeIncompressible: false)
                }
                bw = min(bw, now() - t); bwc = min(bwc, cpu() - c)
                t = now(); c = cpu()
                let back = try NPZ.read(path)
                br = min(br, now() - t); brc = min(brc, cpu() - c)
                guard back["x"]?.bytes == art["x"]!.bytes else { throw TensorIOError("read back differs at level \(level)") }
            }
            let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            print(String(format: "TensorIO %@ write: %7.3f s %8.1f MB/s | cpu %7.3f s %8.1f MB/s  (%.3f of raw size)",
                         label.padded, bw, mb / bw, bwc, mb / bwc, Double(size) / Double(n * 4)))
            print(String(format: "TensorIO %@ read:  %7.3f s %8.1f MB/s | cpu %7.3f s %8.1f MB/s", label.padded, br, mb / br, brc, mb / brc))
            ours[level] = (bw, br, bwc, brc)
            // numpy loads the last file written (untimed) to get the same data.
            if level == lv.last { keep = path } else { try? FileManager.default.removeItem(atPath: path) }
        }
        guard !noNumpy, let src = keep else { if let k = keep { try? FileManager.default.removeItem(atPath: k) }; return }
        defer { try? FileManager.default.removeItem(atPath: src) }
        let out = try runPython([script, src, "x", dir, String(repeats)])
        print(out.split(separator: "\n").filter { !$0.hasPrefix("RESULT") }.joined(separator: "\n"))
        guard let line = out.split(separator: "\n").first(where: { $0.hasPrefix("RESULT") }) else {
            throw TensorIOError("numpy benchmark printed no RESULT line")
        }
        var kv: [String: Double] = [:]
        for part in line.split(separator: " ").dropFirst() {
            let p = part.split(separator: "=")
            if p.count == 2, let v = Double(p[1]) { kv[String(p[0])] = v }
        }
        guard let nw = kv["write_s"], let nr = kv["read_s"], let nwc = kv["write_cpu_s"], let nrc = kv["read_cpu_s"] else {
            throw TensorIOError("bad RESULT line: \(line)")
        }
        for level in lv {
            let o = ours[level]!
            print(String(format: "ratio (ours/numpy speed) %@: write %.2fx  read %.2fx | cpu: write %.2fx  read %.2fx",
                         (level < 0 ? "default" : "level \(level)").padded, nw / o.w, nr / o.r, nwc / o.wc, nrc / o.rc))
        }
    }

    func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    /// CPU time of this process, so results stay comparable on a busy machine.
    func cpu() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    func runPython(_ args: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3"] + args
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw TensorIOError("numpy benchmark failed (exit \(p.terminationStatus)); is numpy installed?") }
        return String(decoding: data, as: UTF8.self)
    }
}

extension String {
    /// Padded to 7 characters, as an NSString for `%@`.
    var padded: NSString { (self.padding(toLength: 7, withPad: " ", startingAt: 0)) as NSString }
}

runMain(BenchIO.self)
