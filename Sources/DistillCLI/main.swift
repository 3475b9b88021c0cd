import ArgumentParser
import Distill
import Foundation
import NN
import StageKit

/// `distill`: stage 4, train a student from the frozen teacher (METHODS.md).
struct DistillCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "distill",
        abstract: "Distil a small student from the frozen teacher on the distillation split.",
        discussion: "Methods: " + DistillMethod.allCases.map { $0.rawValue }.joined(separator: ", ")
            + ". λ and T default to the METHODS.md table for the chosen method. Resumes from <out>.ckpt.npz"
            + " when it holds the same run; writes <out> (student, method state, log, metadata) atomically.")

    @Option(help: "Teacher artifact (train-teacher).") var teacher: String
    @Option(help: "Distillation training split (synthesize distill-train.npz).") var train: String
    @Option(help: "Validation split, true labels (distill-val.npz).") var val: String
    @Option(help: "Relevant subspace (extract-subspace); required by the subdistill methods.") var subspace: String?
    @Option(help: "Output student artifact (.npz).") var out: String
    @Option(help: "Distillation method.") var method: String
    @Option(help: "Student architecture string.") var arch: String = "c8,p,c16,p,c16,p,gap,fc5"
    @Option(help: "Seed of the student's initialisation and batches.") var seed: UInt64 = 0
    @Option(help: "Epochs.") var epochs: Int = DistillConfig.defaultEpochs
    @Option(help: "Batch size (the last incomplete batch is dropped).") var batch: Int = 32
    @Option(help: "AdamW learning rate (halved every quarter of the epochs).") var lr: Float = 1e-3
    @Option(name: .customLong("weight-decay"), help: "AdamW decoupled weight decay.") var weightDecay: Float = 0
    @Option(name: .customLong("lambda-task"), help: "λ_task (default: the method's).") var lambdaTask: Float?
    @Option(name: .customLong("lambda-kd"), help: "λ_kd (default: the method's).") var lambdaKD: Float?
    @Option(name: .customLong("lambda-layer"), help: "λ_layer, or a comma list: one student per value, the best on validation is kept.")
    var lambdaLayer: String?
    @Option(help: "Distillation temperature T (default 4; 1 for dkd).") var temperature: Float?
    @Option(help: "Paired layers teacherTap:studentTap,... (default stage i with stage i).") var pairs: String?
    @Option(help: "SubDistill student normalisation: standardize or center.") var normalization: String = "standardize"
    @Flag(name: .customLong("fitnet-relu"), help: "ReLU after the FitNet regressor (the authors' CNN runs).") var fitnetReLU = false
    @Option(name: .customLong("dkd-alpha"), help: "DKD weight of TCKD.") var dkdAlpha: Float = 1
    @Option(name: .customLong("dkd-beta"), help: "DKD weight of NCKD.") var dkdBeta: Float = 8
    @Option(help: "Student objective: std, balanced or dro.") var objective: String = "std"
    @Option(help: "Robust β in [0, 1]: w = ((1−β)π + βλ)/π.") var beta: Double = 1
    @Option(help: "DRO step size η.") var eta: Double = 0.1
    @Option(name: .customLong("dro-every"), help: "DRO: update λ every K steps.") var droEvery: Int = 32
    @Option(name: .customLong("dro-batch"), help: "DRO: validation images per λ update.") var droBatch: Int = 128
    @Option(help: "Robust groups: class or group (class × artifact).") var groups: String = "class"
    @Flag(name: .customLong("calibrated-teacher"), help: "Undo a robust teacher's logit shift before distilling.") var calibratedTeacher = false
    @Flag(name: .customLong("no-batch-norm"), help: "Student without batch normalisation.") var noBatchNorm = false
    @Option(help: "Threads (default: all cores; SLURM_CPUS_PER_TASK wins).") var threads: Int?

    func run() throws {
        Threads.configure(requested: threads)
        do {
            let m = try DistillMethod(parsing: method)
            var c = DistillConfig(method: m)
            if let v = lambdaTask { c.lambdaTask = v }
            if let v = lambdaKD { c.lambdaKD = v }
            if let v = lambdaLayer {
                c.lambdaLayers = try v.split(separator: ",").map {
                    guard let x = Float($0.trimmingCharacters(in: .whitespaces)) else {
                        throw DistillError("--lambda-layer: '\($0)' is not a number")
                    }
                    return x
                }
            }
            if let v = temperature { c.temperature = v }
            if let p = pairs { c.pairs = try LayerPair.parseList(p) }
            guard let n = StudentNormalization(rawValue: normalization) else {
                throw DistillError("--normalization must be standardize or center, got '\(normalization)'")
            }
            c.normalization = n
            c.fitnetReLU = fitnetReLU
            c.dkdAlpha = dkdAlpha
            c.dkdBeta = dkdBeta
            c.objective = try RobustMode(parsing: objective)
            c.robustBeta = beta
            c.eta = eta
            c.droEvery = droEvery
            c.droBatch = droBatch
            guard let g = RobustGroups(rawValue: groups) else {
                throw DistillError("--groups must be class or group, got '\(groups)'")
            }
            c.groups = g
            c.calibratedTeacher = calibratedTeacher
            c.architecture = arch
            c.batchNorm = !noBatchNorm
            c.seed = seed
            c.epochs = epochs
            c.batchSize = batch
            c.learningRate = lr
            c.weightDecay = weightDecay
            var hooks = DistillStage.Hooks()
            hooks.progress = ProgressLine()
            hooks.log = { StageKit.log($0) }
            hooks.warn = { StageKit.log("distill: warning: \($0)") }
            let r = try DistillStage.run(DistillStageOptions(teacherPath: teacher, trainPath: train, valPath: val,
                                                             subspacePath: subspace, outPath: out, config: c), hooks: hooks)
            let chosen = r.candidates[r.chosen]
            StageKit.log(String(format: "distill: wrote %@ (best val acc %.4f at epoch %d, λ_layer %g)", out,
                                chosen.bestValAccuracy, chosen.bestEpoch + 1, Double(r.chosenLambdaLayer)))
        } catch let e as TrainError {
            throw DistillError(e.message)
        }
    }
}

/// Errors print as `distill: error: …` with exit status 1 (option errors as ArgumentParser prints them).
let command: DistillCommand
do { command = try DistillCommand.parse() } catch { DistillCommand.exit(withError: error) }
do {
    try command.run()
} catch {
    StageKit.log("distill: error: \(error)")
    exit(1)
}
