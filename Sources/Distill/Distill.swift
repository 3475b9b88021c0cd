import NN
import Subspace

/// Namespace of the distillation stage (stage 4, `distill`).
///
/// Files of the stage:
/// - `Methods.swift`: the method names of METHODS.md, their λ defaults, layer pairs;
/// - `Config.swift`: every hyper-parameter (`DistillConfig`) and its metadata form;
/// - `TeacherCache.swift`: the frozen teacher's outputs, computed once before training;
/// - `Trainer.swift`: the training loop (all methods, robust objectives, λ_layer list,
///   best-on-validation checkpoint, resumable epochs);
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
