import ArgumentParser
import CLIKit
import Foundation
import NN
import StageKit
import Training

extension WeightInit: ExpressibleByArgument {}
extension OptimizerKind: ExpressibleByArgument {
    public init?(argument: String) { self.init(rawValue: argument.lowercased()) }
}
extension RobustGroups: ExpressibleByArgument {
    public init?(argument: String) { self.init(rawValue: argument.lowercased()) }
}
/// `--objective`: the robust objectives under the teacher's names (erm
/// for `RobustMode.std`, which is accepted too).
enum TeacherObjective: String, CaseIterable, ExpressibleByArgument {
    case erm, balanced, dro, reweighted

    init?(argument: String) {
        guard let mode = try? RobustMode(parsing: argument) else { return nil }
        self = mode == .std ? .erm : TeacherObjective(rawValue: mode.rawValue)!
    }

    var mode: RobustMode { self == .erm ? .std : RobustMode(rawValue: rawValue)! }
}
extension Augmentation: ExpressibleByArgument {
    public init?(argument: String) { try? self.init(parsing: argument) }
    public static var allValueStrings: [String] { ["none", "crop", "flip", "crop,flip"] }
    public var defaultValueDescription: String { description }
}

/// `train-teacher`: stage 2 of the pipeline (issue 5). The training loop,
/// checks and checkpointing live in `Training.trainTeacher`; this file maps
/// options onto `TeacherOptions` and reports errors.
struct TrainTeacher: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train-teacher",
        abstract: "Train the teacher CNN on all classes (teacher-train), monitored on teacher-val.",
        discussion: """
        Writes OUT (.npz): the network under model/ (architecture, input shape, batch-norm flag, \
        weights and running statistics), class_priors (training split), log_shift (the robust \
        objective's final s = log w; zeros for erm) and the training log log/epoch, log/loss, \
        log/train_acc, log/val_acc, log/val_worst_class, log/lr (with the seconds per epoch in \
        meta.extra.log). The teacher is the network after the LAST epoch (not the best \
        validation epoch): the step-decayed rate is smallest there and teacher-val stays a \
        held-out monitor.

        Resumable: after every epoch the state is saved to OUT.ckpt.npz; rerun with the same \
        arguments and inputs to continue (the result equals an uninterrupted run bit for bit). \
        If OUT already holds this very run, nothing is done.

        Augmentation is off by default. --augment crop shifts images by up to 4 px (black \
        padding); on the default world it raised teacher-val accuracy from 82 % to 86 % but \
        can push dots out of the frame (the dots classes count them). flip is offered but \
        changes classes in the shapes world (a grating at 36° mirrored is one at 144°), so \
        use it only on data where mirroring keeps the label.

        Data and budget, measured: with 500 images per class the default teacher overfits \
        (train 99.9 %, teacher-val 82 % after 15 epochs); synthesize's default 1500 per class \
        with the default --epochs 5 (the same number of steps) reaches 91.5 % on teacher-val \
        and 99.8 % / 99.9 % on the gratings subtask's test-clean / test-conflict.

        --seed seeds the initial weights, the batch order, augmentation and dro's validation \
        batches.

        Robust objectives (docs/methods.md, "Robust objectives"): the loss sees z - log w with \
        w_y = ((1-beta) pi_y + beta lambda_y) / pi_y; balanced keeps lambda uniform (beta 1: \
        plain logit adjustment), dro updates lambda every --dro-every steps from the group \
        errors on a validation batch, lambda <- lambda * exp(eta * err). reweighted applies \
        balanced's costs as per-example loss weights w_y = ((1-beta) pi_y + beta/C) / pi_y \
        (mean 1 over the training split) with no logit shift (log_shift stays zero). A dro \
        teacher records its lambda trajectory in meta.extra.dro: updates, log_lambda_min, \
        log_lambda_max, final_log_lambda, history (log lambda after every update), every, eta.

        \(exitStatusHelp)
        """,
        version: toolVersion)

    @Option(help: "Training split (teacher-train.npz from synthesize).")
    var train: String
    @Option(help: "Validation split (teacher-val.npz).")
    var val: String
    @Option(help: "Output teacher artifact (.npz).")
    var out: String
    @Option(help: "Architecture string (c<N>[k<K>][s<S>], p, a, gap, fc<N>); the last layer must be fc<classes>.")
    var arch: String = "c32,c32,p,c64,c64,p,c128,c128,p,gap,fc20"
    @Flag(help: "Convolutions without batch normalisation (conv with bias → ReLU).")
    var noBatchNorm = false
    @Option(name: .customLong("init"), help: "Initialisation of convolutions and linear layers (docs/methods.md, \"Initialisation\").")
    var weightInit: WeightInit = .pytorch
    @Option(help: "Epochs.")
    var epochs: Int = 5
    @Option(help: "Mini-batch size (the last incomplete batch of an epoch is dropped).")
    var batch: Int = 64
    @Option(help: "Optimiser (sgd with --momentum).")
    var optimizer: OptimizerKind = .adamw
    @Option(help: "Base learning rate (default 1e-3 for adam/adamw, 0.05 for sgd).")
    var lr: Float?
    @Option(help: "Epochs between learning-rate decays (default: a quarter of the epochs, rounded up).")
    var lrStep: Int?
    @Option(help: "Learning-rate decay factor per step.")
    var lrGamma: Float = 0.5
    @Option(help: "Weight decay (decoupled for adamw, L2 for adam and sgd); BN parameters and biases exempt.")
    var weightDecay: Float = 0
    @Option(help: "Momentum of sgd.")
    var momentum: Float = 0.9
    @OptionGroup var seedOption: SeedOption
    @Option(help: "Augmentation (flip changes classes of the shapes world).")
    var augment: Augmentation = .none
    @Option(help: "Objective: erm, balanced, dro or reweighted (docs/methods.md, \"Robust objectives\").")
    var objective: TeacherObjective = .erm
    @Option(help: "beta in [0, 1] of w_y = ((1-beta) pi_y + beta lambda_y)/pi_y (0 = erm).")
    var beta: Double = 1
    @Option(help: "Step size eta of dro's lambda update.")
    var eta: Double = RobustObjective.defaultEta
    @Option(help: "dro: update lambda every K training steps.")
    var droEvery: Int = RobustObjective.defaultUpdateEvery
    @Option(help: "dro: validation images per lambda update.")
    var droBatch: Int = 256
    @Option(help: "Robust groups: class (worst-class) or group (class x artifact state).")
    var groups: RobustGroups = .class
    @OptionGroup var threadsOption: ThreadsOption
    @Option(help: "Stop after this many epochs, keeping the checkpoint and writing no teacher (to split a long run).")
    var stopAfter: Int?
    @OptionGroup var quietFlag: QuietFlag
    @Option(name: .customLong("check"), help: ArgumentHelp(
        "A split to print the finished teacher's accuracy on (a subtask split such as test-clean.npz: logits cut to its subtask_classes; else all classes); repeatable. Printed only, never stored: choose settings on teacher-val, not on test splits.",
        valueName: "split"))
    var check: [String] = []

    func run() throws {
        Threads.configure(requested: threadsOption.threads)
        var o = TeacherOptions(trainPath: train, valPath: val, outPath: out)
        o.architecture = arch
        o.batchNorm = !noBatchNorm
        o.weightInit = weightInit
        o.epochs = epochs
        o.batch = batch
        o.optimizer = optimizer
        o.learningRate = lr
        o.lrStep = lrStep
        o.lrGamma = lrGamma
        o.weightDecay = weightDecay
        o.momentum = momentum
        o.seed = seedOption.seed
        o.augmentation = augment
        o.objective = objective.mode
        o.beta = beta
        o.eta = eta
        o.droEvery = droEvery
        o.droBatch = droBatch
        o.groups = groups
        o.stopAfterEpochs = stopAfter
        o.verbose = !quietFlag.quiet
        for path in check { try requireFile(path, role: "split to check (--check)") }
        _ = try Training.trainTeacher(o)
        if !check.isEmpty {
            let teacher = try TeacherArtifact.load(out)
            for path in check {
                let d = try Dataset(path: path)
                let ev = try Training.evaluate(model: teacher.model, dataset: d, classes: d.subtaskClasses)
                let view = d.subtaskClasses.map { "subtask classes " + $0.map(String.init).joined(separator: ",") } ?? "all classes"
                let names = d.classNames ?? ev.perClassRecall.indices.map { "class \($0)" }
                let weakest = ev.perClassRecall.enumerated().compactMap { i, r in r.map { (names[i], $0) } }
                    .sorted { $0.1 < $1.1 }.prefix(5).map { String(format: "%@ %.2f", $0.0, $0.1) }
                print(String(format: "check %@: accuracy %.4f, worst class %.4f (%d images, %@); weakest: %@",
                             d.name, ev.accuracy, ev.worstClassAccuracy, d.count, view, weakest.joined(separator: ", ")))
            }
        }
    }
}

runMain(TrainTeacher.self)
