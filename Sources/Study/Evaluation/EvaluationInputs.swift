import Foundation
import NN
import StageKit
import Subspace
import TensorIO

/// Everything `evaluate` reads, loaded and checked against each other
/// before any long computation (the first steps of `EvaluateStage.run`):
/// the files exist and no output would overwrite one; the student, the
/// teacher, the three test splits, the probe's splits and the subspace
/// read; the splits fit both networks; the probe's pairs and the subspace
/// fit the teacher.
struct EvaluationInputs {
    let options: EvaluateOptions
    /// DATA/test.npz, DATA/test-clean.npz, DATA/test-conflict.npz.
    let splitPaths: [String]
    let studentArtifact: Artifact
    let student: Model
    let teacher: TeacherArtifact
    let test: StageKit.Dataset, clean: StageKit.Dataset, conflict: StageKit.Dataset
    /// The probe's clean and patched splits (default test-clean/test-conflict).
    let probeClean: StageKit.Dataset, probePatched: StageKit.Dataset
    let subspace: Artifact?
    /// K, the student's classes (the subtask's).
    let k: Int
    /// The teacher's logit columns of the subtask classes.
    let teacherColumns: [Int]
    /// Side of the artifact patch on test-conflict and on the probe's patched split.
    let patch: Int, probePatch: Int
    /// The probe's image pairs (`ArtifactProbe.pairs`).
    let pairs: [Int]
    let subspaceDigest: String?
    /// Provenance mismatches the user allowed (`--allow-mismatch`).
    let provenanceMismatches: [String]

    var splits: [StageKit.Dataset] { [test, clean, conflict] }

    init(checking o: EvaluateOptions, log: (String) -> Void) throws {
        options = o
        splitPaths = try Self.checkFiles(o)
        // Read.
        subspace = try Self.readSubspace(o)
        do { studentArtifact = try NPZ.read(o.student) } catch {
            throw EvaluationError("student '\(o.student)': \(error)", causedBy: error)
        }
        student = try NetworkArtifact.read(from: studentArtifact)
        teacher = try TeacherArtifact.load(o.teacher)
        var splits: [StageKit.Dataset] = []
        for (name, path) in zip(EvaluateStage.splitNames, splitPaths) {
            do { splits.append(try StageKit.Dataset(path: path)) } catch {
                throw EvaluationError("\(name) split '\(path)': \(error)", causedBy: error)
            }
        }
        (test, clean, conflict) = (splits[0], splits[1], splits[2])
        var probeClean = clean, probePatched = conflict
        if let c = o.probeClean, let p = o.probePatched {
            do { probeClean = try StageKit.Dataset(path: c) } catch { throw EvaluationError("probe clean split '\(c)': \(error)", causedBy: error) }
            do { probePatched = try StageKit.Dataset(path: p) } catch { throw EvaluationError("probe patched split '\(p)': \(error)", causedBy: error) }
        }
        (self.probeClean, self.probePatched) = (probeClean, probePatched)
        // Check against each other.
        (k, teacherColumns) = try Self.subtaskColumns(splits: splits, student: student, teacher: teacher, studentPath: o.student)
        patch = Self.patchSide(conflict)
        probePatch = Self.patchSide(probePatched)
        guard probeClean.imageShape == student.inputShape else {
            throw EvaluationError("probe split '\(probeClean.name)': images are \(probeClean.imageShape), the networks expect \(student.inputShape)")
        }
        pairs = try ArtifactProbe.pairs(clean: probeClean, patched: probePatched, patch: probePatch)
        subspaceDigest = try Self.checkSubspace(o, subspace, teacher: teacher)
        let provenance = try Self.checkProvenance(o, studentMeta: studentArtifact.meta, teacher: teacher,
                                                  subspaceDigest: subspaceDigest, splits: splits, splitPaths: splitPaths)
        provenanceMismatches = provenance.mismatches
        for w in provenance.warnings { log(w) }
    }

    /// What the student recorded about its own upstream against what
    /// evaluate is given: the teacher it was distilled from, the subspace
    /// it used, the world of its training split against each test split's
    /// (`ProvenanceChecks`). Returns the mismatches the user allowed.
    static func checkProvenance(_ o: EvaluateOptions, studentMeta: ArtifactMeta?, teacher: TeacherArtifact,
                                subspaceDigest: String?, splits: [StageKit.Dataset], splitPaths: [String]) throws -> ProvenanceChecks {
        var checks = ProvenanceChecks(allowMismatch: o.allowMismatch)
        let recorder = "student '\(o.student)'"
        try checks.digest(recorded: studentMeta?.inputs["teacher"], by: recorder, actual: teacher.digest,
                          of: o.teacher, what: "teacher")
        if let d = subspaceDigest, let path = o.subspace {
            try checks.digest(recorded: studentMeta?.inputs["subspace"], by: recorder, actual: d, of: path, what: "subspace")
        }
        let trained = SplitWorld(recorded: studentMeta?.parameters["world"])
        for (name, (d, path)) in zip(EvaluateStage.splitNames, zip(splits, splitPaths)) {
            try checks.world(SplitWorld(meta: d.meta), of: "\(name) split '\(path)'",
                             matches: trained, of: "the training split of \(recorder)")
        }
        return checks
    }

    /// Every input file exists and no output is an input; returns the
    /// paths of the three test splits.
    static func checkFiles(_ o: EvaluateOptions) throws -> [String] {
        try requireFile(o.student, role: "student")
        try requireFile(o.teacher, role: "teacher")
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: o.data, isDirectory: &isDir), isDir.boolValue else {
            throw EvaluationError(io: "data folder '\(o.data)' does not exist or is not a folder")
        }
        let splitPaths = EvaluateStage.splitNames.map { (o.data as NSString).appendingPathComponent($0 + ".npz") }
        for (name, path) in zip(EvaluateStage.splitNames, splitPaths) {
            try requireFile(path, role: "\(name) split (run synthesize with --splits test,test-clean,test-conflict)")
        }
        // An output written over an input would destroy it (metrics.npz is
        // named after --out: `--out student.json` beside `student.npz`).
        func canonical(_ p: String) -> String { URL(fileURLWithPath: p).standardizedFileURL.resolvingSymlinksInPath().path }
        let inputs = [o.student, o.teacher, o.subspace, o.teacherCache, o.probeClean, o.probePatched].compactMap { $0 } + splitPaths
        for out in o.outputPaths {
            if let clash = inputs.first(where: { canonical($0) == canonical(out) }) {
                throw EvaluationError("output '\(out)' is the input '\(clash)'; choose another --out or --heatmap (metrics.npz is written beside metrics.json, named after it)")
            }
        }
        guard (o.probeClean == nil) == (o.probePatched == nil) else {
            throw EvaluationError(usage: "--probe-clean and --probe-patched go together (the probe pairs a clean split with the same images carrying the patch)")
        }
        if let c = o.probeClean, let p = o.probePatched {
            try requireFile(c, role: "probe clean split (--probe-clean)")
            try requireFile(p, role: "probe patched split (--probe-patched)")
        }
        return splitPaths
    }

    /// The `--subspace` artifact, which must hold at least one basis.
    static func readSubspace(_ o: EvaluateOptions) throws -> Artifact? {
        guard let path = o.subspace else { return nil }
        try requireFile(path, role: "subspace (--subspace)")
        let subspace: Artifact
        do { subspace = try NPZ.read(path) } catch { throw EvaluationError("subspace '\(path)': \(error)", causedBy: error) }
        guard !SubspaceBasis.stored(in: subspace).isEmpty else {
            throw EvaluationError("subspace '\(path)' holds no basis (no <layer>/<basis>/U entry); is it an extract-subspace output?")
        }
        return subspace
    }

    /// Checks image shape, class count, labels and subtask classes of the
    /// splits against both networks; returns K and the teacher's columns
    /// of the subtask classes.
    static func subtaskColumns(splits: [StageKit.Dataset], student: Model, teacher: TeacherArtifact,
                               studentPath: String) throws -> (k: Int, teacherColumns: [Int]) {
        let k = student.outputShape.reduce(1, *)
        guard student.outputShape.count == 1 else {
            throw EvaluationError("student '\(studentPath)': the network does not end in logits (output shape \(student.outputShape))")
        }
        let subtask = splits[0].subtaskClasses
        for (name, d) in zip(EvaluateStage.splitNames, splits) {
            guard d.imageShape == student.inputShape else {
                throw EvaluationError("\(name) split: images are \(d.imageShape) (H×W×C) but the student expects \(student.inputShape)")
            }
            guard d.imageShape == teacher.model.inputShape else {
                throw EvaluationError("\(name) split: images are \(d.imageShape) (H×W×C) but the teacher expects \(teacher.model.inputShape)")
            }
            guard d.numClasses == k else {
                throw EvaluationError("the student has \(k) classes but the \(name) split has \(d.numClasses); were they made for the same subtask?")
            }
            if let bad = d.labels.first(where: { $0 < 0 || $0 >= k }) {
                throw EvaluationError("\(name) split: label \(bad) is outside 0..<\(k)")
            }
            guard d.subtaskClasses == subtask else {
                throw EvaluationError("\(name) split: subtask classes \(d.subtaskClasses ?? []) differ from the test split's \(subtask ?? [])")
            }
            guard d.count > 0 else { throw EvaluationError("\(name) split '\(name).npz' has no images") }
        }
        let teacherOutputs = teacher.model.outputShape.reduce(1, *)
        if let s = subtask {
            guard s.allSatisfy({ $0 >= 0 && $0 < teacherOutputs }) else {
                throw EvaluationError("subtask classes \(s) of the splits do not fit the teacher's \(teacherOutputs) classes")
            }
            return (k, s)
        } else if teacherOutputs == k {
            return (k, Array(0..<k))
        } else {
            throw EvaluationError("the splits carry no subtask_classes and the teacher has \(teacherOutputs) classes, not \(k)")
        }
    }

    /// The side of a split's artifact patch: its `patch_size`, else a
    /// quarter of the image side.
    static func patchSide(_ d: StageKit.Dataset) -> Int {
        let side = min(d.height, d.width)
        if let p = d.meta?.extra["patch_size"]?.number, p >= 1, p <= Double(side) { return Int(p) }
        return side / 4
    }

    /// The subspace fits the teacher (extracted from it, its layers).
    /// Returns its digest.
    static func checkSubspace(_ o: EvaluateOptions, _ subspace: Artifact?, teacher: TeacherArtifact) throws -> String? {
        guard let path = o.subspace, let sub = subspace else { return nil }
        let digest = try sha256Hex(ofFile: path)
        if let t = sub.meta?.inputs["teacher"], t != teacher.digest {
            throw EvaluationError("subspace '\(path)' was extracted from another teacher (digest \(t.prefix(12))…, --teacher has \(teacher.digest.prefix(12))…)")
        }
        for (layer, _) in SubspaceBasis.stored(in: sub) where !teacher.model.tapNames.contains(layer) {
            throw EvaluationError("subspace '\(path)' has a basis for layer '\(layer)', which the teacher '\(teacher.model.architecture)' does not have")
        }
        return digest
    }

    /// SHA-256 of every input, by role (metrics.npz `meta.inputs`).
    func digests() throws -> [String: String] {
        let o = options
        var digests: [String: String] = ["student": try sha256Hex(ofFile: o.student), "teacher": teacher.digest]
        for (name, path) in zip(EvaluateStage.splitNames, splitPaths) { digests[name] = try sha256Hex(ofFile: path) }
        if let c = o.probeClean, let p = o.probePatched {
            digests["probe-clean"] = try sha256Hex(ofFile: c)
            digests["probe-patched"] = try sha256Hex(ofFile: p)
        }
        if let d = subspaceDigest { digests["subspace"] = d }
        return digests
    }
}
