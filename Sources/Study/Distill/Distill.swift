import NN
import Subspace

/// Namespace of the distillation stage (stage 4, `distill`).
///
/// Files of the stage:
/// - `Method.swift`: what a method is (`DistillationMethod`), its defaults,
///   pairing, teacher transform, logit term;
/// - `Registry.swift`: every method, in one list (`MethodRegistry.all`);
/// - `Methods/`: one file per method: its type and its loss with gradient;
/// - `LayerLoss.swift`: the layer-term protocol and shared kernels;
/// - `Config.swift`: every hyper-parameter (`DistillConfig`) and its metadata form;
/// - `TeacherCache.swift`: the frozen teacher's outputs, computed once before training;
/// - `Trainer.swift`: set-up and the candidate/epoch loop; `TrainerStep.swift`:
///   one step, one epoch; `TrainerCheckpoint.swift`: state and resumable checkpoints;
/// - `Stage.swift`: input checks, artifact layout of `student.npz`.
public enum Distill {
    /// RNG streams (all from the run's seed) so that each random choice is
    /// independent of how many numbers the others drew, and a resumed run
    /// draws exactly what an uninterrupted one would: epoch e's shuffle is
    /// `RNG(seed:, stream: Stream.epoch + e)` (the "RNG(seed:, stream: epoch)"
    /// rule, offset because model initialisation already uses streams
    /// 0, 1, … — one per architecture token — of the same seed).
    public enum Stream {
        /// Epoch e's shuffle: `RNG(seed:, stream: epoch + e)`.
        public static let epoch: UInt64 = 0x4453_0000_0000
        /// Epoch e's DRO validation batches: `RNG(seed:, stream: dro + e)`.
        public static let dro: UInt64 = 0x4453_0001_0000
        /// Pair p's layer-loss initialisation (regressors, rotations): `layerLoss + p`.
        public static let layerLoss: UInt64 = 0x4453_0002_0000
    }
}
