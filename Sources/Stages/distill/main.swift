import ArgumentParser
import CLIKit
import Distill
import Foundation
import NN
import StageKit
import Subspace

extension DistillMethod: ExpressibleByArgument {
    public init?(argument: String) { try? self.init(parsing: argument) }
    public static var allValueStrings: [String] { MethodRegistry.names }
}
extension StudentNormalization: ExpressibleByArgument {}
extension RobustMode: ExpressibleByArgument {}
extension RobustGroups: ExpressibleByArgument {}
extension WeightInit: ExpressibleByArgument {}
extension EpochSelection: ExpressibleByArgument {}

/// `distill`: stage 4, train a student from the frozen teacher (docs/methods.md).
struct DistillCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "distill",
        abstract: "Distil a small student from the frozen teacher on the distillation split.",
        discussion: "λ and T default to the chosen method's published values (distill --list-methods; the formulas"
            + " and sources: docs/methods.md). Resumes from <out>.ckpt.npz when it holds the same run; writes <out>"
            + " (student, method state, log, metadata) atomically. --seed seeds the student's initialisation and"
            + " batches.\n\n" + exitStatusHelp,
        version: toolVersion)

    @Flag(name: .customLong("list-methods"), help: "List every method: name, subspace basis it reads (- for none), defaults, source; then exit.")
    var listMethods = false
    @Flag(name: .customLong("list-tuning"), help: "List every method's tuning grid, one candidate per line: method, name, distill options; then exit.")
    var listTuning = false
    @Option(name: .customLong("needs-subspace"), help: ArgumentHelp("Print the subspace basis METHOD reads (nothing if none) and exit (for Make).", valueName: "method"))
    var needsSubspace: DistillMethod?

    @Option(help: "Teacher artifact (train-teacher). Required.") var teacher: String?
    @Option(help: "Distillation training split (synthesize distill-train.npz). Required.") var train: String?
    @Option(help: "Validation split, true labels (distill-val.npz). Required.") var val: String?
    @Option(help: "Relevant subspace (extract-subspace); required by the methods that read a basis.") var subspace: String?
    @Option(help: "Output student artifact (.npz). Required.") var out: String?
    @Option(help: "Distillation method. Required.") var method: DistillMethod?
    @Option(help: "Student architecture string.") var arch: String = "c8,p,c16,p,c16,p,gap,fc5"
    @OptionGroup var seedOption: SeedOption
    @Option(help: "Epochs.") var epochs: Int = DistillConfig.defaultEpochs
    @Option(help: "Batch size (the last incomplete batch is dropped).") var batch: Int = 32
    @Option(help: "AdamW learning rate (halved every quarter of the epochs).") var lr: Float = 1e-3
    @Option(name: .customLong("weight-decay"), help: "AdamW decoupled weight decay.") var weightDecay: Float = 0
    @Option(name: .customLong("lambda-task"), help: "λ_task (default: the method's).") var lambdaTask: Float?
    @Option(name: .customLong("lambda-kd"), help: "λ_kd (default: the method's).") var lambdaKD: Float?
    @Option(name: .customLong("lambda-layer"), help: "λ_layer, or a comma list: one student per value, the best on validation is kept (default: the method's).")
    var lambdaLayer: String?
    @Option(help: "Distillation temperature T (default: the method's, 4).") var temperature: Float?
    @Option(help: "Paired layers teacherTap:studentTap,... (default: the method's pairing, stage i with stage i).") var pairs: String?
    @Option(help: "SubDistill student normalisation.") var normalization: StudentNormalization = .standardize
    @Option(name: .customLong("dkd-alpha"), help: "DKD weight of TCKD.") var dkdAlpha: Float = 1
    @Option(name: .customLong("dkd-beta"), help: "DKD weight of NCKD (default 8).") var dkdBeta: Float?
    @Option(name: .customLong("dkd-warmup"), help: "DKD linear warm-up in epochs (default: a twelfth of --epochs; 0: none).") var dkdWarmup: Double?
    @Option(help: "Student objective (docs/methods.md, \"Robust objectives\"): std (= erm), balanced (logits shifted by log w, w_y = ((1−β)π_y + β/C)/π_y: logit adjustment), dro (the same shift with λ updated from validation errors), reweighted (balanced's w_y as per-example weights of the CE and KD terms, mean 1 over the training split, no shift; the priors are the training labels' frequencies even for teacher-only methods; not with dkd).")
    var objective: RobustMode = .std
    @Option(help: "Robust β in [0, 1]: w = ((1−β)π + βλ)/π; 0 gives std.") var beta: Double = 1
    @Option(help: "DRO step size η: log λ_g += η·err_g per update, so U updates let log λ spread by at most η·U.") var eta: Double = RobustObjective.defaultEta
    @Option(name: .customLong("dro-every"), help: "DRO: update λ every K training steps. A dro run records its λ trajectory in student.npz meta.extra.dro (updates, log_lambda_min/max, final_log_lambda, history, every, eta).")
    var droEvery: Int = RobustObjective.defaultUpdateEvery
    @Option(name: .customLong("dro-batch"), help: "DRO: random validation images whose per-class errors drive each λ update.") var droBatch: Int = 128
    @Option(help: "Robust groups: class, or group (class × artifact).") var groups: RobustGroups = .class
    @Flag(name: .customLong("calibrated-teacher"), help: "Undo a robust teacher's logit shift before distilling.") var calibratedTeacher = false
    @Option(name: .customLong("select-by"), help: "Validation score that keeps the epoch and the λ_layer candidate: val-accuracy (overall), or val-worst-class (the worst class's recall, what a worst-class objective optimises). Recorded as select_by when not the default.")
    var selectBy: EpochSelection = .valAccuracy
    @Flag(name: .customLong("no-batch-norm"), help: "Student without batch normalisation.") var noBatchNorm = false
    @Option(name: .customLong("init"), help: "Initialisation of the student's convolutions and linear layers (docs/methods.md, \"Initialisation\").")
    var weightInit: WeightInit = .pytorch
    @Option(help: "Tuning artifact (select-hparams): its chosen hyper-parameters replace the method's defaults (docs/methods.md, \"Tuning protocol\").")
    var tuned: String?
    @Flag(name: .customLong("allow-mismatch"), help: "Run even when the validation split or the subspace's data come from another world than the training split; the mismatches go into student.npz meta.extra.provenance_mismatches (docs/stages.md, \"Provenance\").")
    var allowMismatch = false
    @OptionGroup var threadsOption: ThreadsOption

    /// `--list-methods` lines: name, basis, λ_task/λ_kd/λ_layer/T, summary.
    static func methodTable() -> String {
        MethodRegistry.all.map { m in
            let d = m.defaults
            func f(_ x: Float) -> String { String(format: "%g", Double(x)) }
            return [m.name, m.basis?.rawValue ?? "-",
                    "task=\(f(d.lambdaTask)) kd=\(f(d.lambdaKD)) layer=\(f(d.lambdaLayer)) T=\(f(d.temperature))",
                    m.summary].joined(separator: "\t")
        }.joined(separator: "\n")
    }

    mutating func validate() throws {
        if listMethods || listTuning || needsSubspace != nil { return }
        let missing = [("--teacher", teacher), ("--train", train), ("--val", val), ("--out", out)]
            .filter { $0.1 == nil }.map(\.0) + (method == nil ? ["--method"] : [])
        guard missing.isEmpty else { throw ValidationError("missing \(missing.joined(separator: ", "))") }
    }

    func run() throws {
        if listMethods { print(Self.methodTable()); return }
        if listTuning {
            for m in MethodRegistry.all { for p in m.tuningGrid.points { print("\(m.name)\t\(p.slug)\t\(p.arguments)") } }
            return
        }
        if let m = needsSubspace {
            if let b = m.basisKind { print(b.rawValue) }
            return
        }
        Threads.configure(requested: threadsOption.threads)
        do {
            var c = DistillConfig(method: method!)
            if let v = lambdaTask { c.lambdaTask = v }
            if let v = lambdaKD { c.lambdaKD = v }
            if let v = lambdaLayer {
                c.lambdaLayers = try v.split(separator: ",").map {
                    guard let x = Float($0.trimmingCharacters(in: .whitespaces)) else {
                        throw DistillError(usage: "--lambda-layer: '\($0)' is not a number")
                    }
                    return x
                }
            }
            if let v = temperature { c.temperature = v }
            if let p = pairs { c.pairs = try LayerPair.parseList(p) }
            c.normalization = normalization
            c.dkdAlpha = dkdAlpha
            if let v = dkdBeta { c.dkdBeta = v }
            c.dkdWarmupEpochs = dkdWarmup
            c.objective = objective
            c.robustBeta = beta
            c.eta = eta
            c.droEvery = droEvery
            c.droBatch = droBatch
            c.groups = groups
            c.calibratedTeacher = calibratedTeacher
            c.selectBy = selectBy
            c.architecture = arch
            c.batchNorm = !noBatchNorm
            c.weightInit = weightInit
            c.seed = seedOption.seed
            c.epochs = epochs
            c.batchSize = batch
            c.learningRate = lr
            c.weightDecay = weightDecay
            var explicit = Set<Hyperparameter>()
            if lambdaLayer != nil { explicit.insert(.lambdaLayer) }
            if temperature != nil { explicit.insert(.temperature) }
            if dkdBeta != nil { explicit.insert(.dkdBeta) }
            var hooks = DistillStage.Hooks()
            hooks.progress = ProgressLine()
            hooks.log = { StageKit.log($0) }
            hooks.warn = { StageKit.log("distill: warning: \($0)") }
            let r = try DistillStage.run(DistillStageOptions(teacherPath: teacher!, trainPath: train!, valPath: val!,
                                                             subspacePath: subspace, outPath: out!, config: c,
                                                             tunedPath: tuned, explicit: explicit,
                                                             allowMismatch: allowMismatch), hooks: hooks)
            let chosen = r.candidates[r.chosen]
            StageKit.log(String(format: "distill: wrote %@ (best val acc %.4f at epoch %d, λ_layer %g)", out!,
                                chosen.bestValAccuracy, chosen.bestEpoch + 1, Double(r.chosenLambdaLayer)))
        } catch let e as TrainError {
            throw DistillError(e.message, kind: e.kind)
        }
    }
}

/// Errors print as `distill: error: …` with the exit status of their kind (docs/stages.md, "Exit status").
runMain(DistillCommand.self)
