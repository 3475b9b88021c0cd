import Foundation
import TensorIO

extension SynthesisPlan {
    /// Renders every chosen split, then writes `DIR/<split>.npz` (and
    /// `DIR/<split>.png` contact sheets) all or nothing: files go to a
    /// staging folder inside DIR first and are renamed into place only when
    /// all of them were written. `fixedTime` stamps meta.json with
    /// 1970-01-01T00:00:00Z so that equal inputs give byte-identical files.
    /// `log` receives progress lines.
    public func writeAll(to dir: String, contactSheets: Bool = true, fixedTime: Bool = false,
                         log: (String) -> Void = { _ in }) throws {
        try checkWritableDirectory(dir)
        let created = fixedTime ? Date(timeIntervalSince1970: 0) : Date()
        let inputs = try inputDigests()
        var rendered: [SplitData] = []
        for split in config.splits {
            let start = Date()
            let total = classCounts(of: split).reduce(0, +)
            var lastQuarter = 0
            let data = generate(split) { done, n in
                // Quarter marks for long splits only.
                guard n >= 2000 else { return }
                let q = done * 4 / n
                if q > lastQuarter && q < 4 { lastQuarter = q; log("synthesize: \(split.rawValue) \(done)/\(n) images") }
            }
            log(String(format: "synthesize: %@ %d images rendered in %.2f s", split.rawValue, total, Date().timeIntervalSince(start)))
            rendered.append(data)
        }

        let fm = FileManager.default
        // A writer killed earlier (SIGKILL runs no cleanup) leaves its staging
        // folder behind; clear those whose process is gone.
        for name in (try? fm.contentsOfDirectory(atPath: dir)) ?? [] where name.hasPrefix(".synthesize-staging-") {
            if let pid = Int32(name.dropFirst(".synthesize-staging-".count)), pid != getpid(),
               kill(pid, 0) != 0 {
                try? fm.removeItem(atPath: (dir as NSString).appendingPathComponent(name))
            }
        }
        let staging = (dir as NSString).appendingPathComponent(".synthesize-staging-\(getpid())")
        try? fm.removeItem(atPath: staging)
        do { try fm.createDirectory(atPath: staging, withIntermediateDirectories: false) } catch {
            throw SynthesisError(io: "cannot create the staging folder \(staging): \(error.localizedDescription)")
        }
        defer { try? fm.removeItem(atPath: staging) }
        var files: [String] = []
        do {
            for data in rendered {
                let name = data.name.rawValue
                try NPZ.write(data.tensors(meta: meta(for: data, created: created, inputs: inputs)),
                              to: (staging as NSString).appendingPathComponent(name + ".npz"))
                files.append(name + ".npz")
                if contactSheets {
                    let sheet = contactSheet(data)
                    try atomicWrite(encodePNG(rgb: sheet.rgb, width: sheet.width, height: sheet.height),
                                    to: (staging as NSString).appendingPathComponent(name + ".png"))
                    files.append(name + ".png")
                }
            }
        } catch let e as TensorIOError {
            throw SynthesisError("writing into \(dir) failed, nothing written: \(e.message)", causedBy: e)
        }
        // A folder in the way would make a rename fail halfway; refuse first.
        for f in files {
            var isDir: ObjCBool = false
            let to = (dir as NSString).appendingPathComponent(f)
            if fm.fileExists(atPath: to, isDirectory: &isDir), isDir.boolValue {
                throw SynthesisError(io: "\(to) is a folder; nothing written")
            }
        }
        for f in files {
            let from = (staging as NSString).appendingPathComponent(f)
            let to = (dir as NSString).appendingPathComponent(f)
            guard rename(from, to) == 0 else {
                throw SynthesisError(io: "cannot move \(f) into \(dir): \(String(cString: strerror(errno)))")
            }
        }
        log("synthesize: wrote \(files.joined(separator: ", ")) to \(dir)")
    }

    /// SHA-256 of every input file, by role, for meta.json's `inputs`.
    func inputDigests() throws -> [String: String] {
        var d: [String: String] = [:]
        do {
            // One pair: keys mnist-images, mnist-labels; several (a folder):
            // mnist-images-<i>, mnist-labels-<i> in pooling order.
            for (i, f) in digitFiles.enumerated() {
                let tag = digitFiles.count == 1 ? "" : "-\(i)"
                d["mnist-images" + tag] = try sha256Hex(ofFile: f.images)
                d["mnist-labels" + tag] = try sha256Hex(ofFile: f.labels)
            }
            for (i, p) in config.cifarPaths.enumerated() { d["cifar-\(i)"] = try sha256Hex(ofFile: p) }
        } catch let e as TensorIOError {
            throw SynthesisError(e.message, causedBy: e)
        }
        return d
    }
}
