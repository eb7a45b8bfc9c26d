//! Between burn's dispatch tensors and one backend's primitives, with or without autodiff, and
//! whichever gradient-checkpointing strategy the autodiff device runs.
//!
//! A fused operation computes on a concrete backend's primitives and registers its own backward
//! step. burn's dispatch types an autodiff tensor by its checkpoint strategy
//! (`Autodiff<B, NoCheckpointing>` and `Autodiff<B, BalancedCheckpointing>` are different
//! types), so the conversion and the step's registration follow the device's strategy: a model
//! trained with `--checkpointing` takes the fused path as one trained without.

use burn::backend::autodiff::checkpoint::strategy::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing,
};
use burn::backend::autodiff::ops::{Backward, NodeGuard, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, Backend, DispatchKindConversion, DispatchTensor, GradientCheckpointingStrategy,
};
use burn::prelude::*;
use std::fmt::Debug;

/// The autodiff primitive of a backend `B` (the same type under every checkpoint strategy).
pub type TrackedOf<B> = FloatTensor<Autodiff<B>>;

/// The checkpoint strategy of an autodiff device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Keep what each step saved (`NoCheckpointing`).
    Keep,
    /// burn's balanced gradient checkpointing (`BalancedCheckpointing`).
    Balanced,
}

impl Strategy {
    /// The strategy of `device`, or `None` when it does not track gradients.
    pub fn of(device: &Device) -> Option<Self> {
        device.gradient_checkpointing_strategy().map(|s| match s {
            GradientCheckpointingStrategy::Balanced => Strategy::Balanced,
            GradientCheckpointingStrategy::Disabled => Strategy::Keep,
        })
    }
}

/// A backend whose tensors the dispatch layer converts to and from, plain and under either
/// checkpoint strategy.
pub trait Routed: Backend {
    /// `t`'s plain primitive, `None` when `t` is tracked or on another backend.
    fn plain<const D: usize>(t: Tensor<D>) -> Option<FloatTensor<Self>>;
    /// `t`'s autodiff primitive under `strategy`, `None` when it is not one.
    fn tracked<const D: usize>(t: Tensor<D>, strategy: Strategy) -> Option<TrackedOf<Self>>;
    /// A plain primitive as a dispatch tensor.
    fn from_plain<const D: usize>(p: FloatTensor<Self>) -> Tensor<D>;
    /// An autodiff primitive as a dispatch tensor of `strategy`'s device.
    fn from_tracked<const D: usize>(p: TrackedOf<Self>, strategy: Strategy) -> Tensor<D>;
}

impl<B: Backend> Routed for B
where
    DispatchTensor: DispatchKindConversion<B>
        + DispatchKindConversion<Autodiff<B>>
        + DispatchKindConversion<Autodiff<B, BalancedCheckpointing>>,
{
    fn plain<const D: usize>(t: Tensor<D>) -> Option<FloatTensor<B>> {
        t.try_into_primitive::<B>().ok()
    }

    fn tracked<const D: usize>(t: Tensor<D>, strategy: Strategy) -> Option<TrackedOf<B>> {
        match strategy {
            Strategy::Keep => t.try_into_primitive::<Autodiff<B>>().ok(),
            Strategy::Balanced => t
                .try_into_primitive::<Autodiff<B, BalancedCheckpointing>>()
                .ok(),
        }
    }

    fn from_plain<const D: usize>(p: FloatTensor<B>) -> Tensor<D> {
        Tensor::from_primitive::<B>(p)
    }

    fn from_tracked<const D: usize>(p: TrackedOf<B>, strategy: Strategy) -> Tensor<D> {
        match strategy {
            Strategy::Keep => Tensor::from_primitive::<Autodiff<B>>(p),
            Strategy::Balanced => Tensor::from_primitive::<Autodiff<B, BalancedCheckpointing>>(p),
        }
    }
}

/// Registers `step` as the backward step of `output` with `parents`, under `strategy`. The step
/// is compute-bound: under checkpointing its output is kept, never recomputed.
pub fn register<B: Backend, S: Backward<B, N>, const N: usize>(
    step: S,
    parents: [NodeGuard; N],
    state: S::State,
    output: FloatTensor<B>,
    strategy: Strategy,
) -> TrackedOf<B> {
    fn with<C: CheckpointStrategy, B: Backend, S: Backward<B, N>, const N: usize>(
        step: S,
        parents: [NodeGuard; N],
        state: S::State,
        output: FloatTensor<B>,
    ) -> TrackedOf<B> {
        match step.prepare::<C>(parents).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(state, output),
            OpsKind::UnTracked(prep) => prep.finish(output),
        }
    }
    match strategy {
        Strategy::Keep => with::<NoCheckpointing, B, S, N>(step, parents, state, output),
        Strategy::Balanced => with::<BalancedCheckpointing, B, S, N>(step, parents, state, output),
    }
}

/// The most layer inputs one fused call takes: its backward step's parents (the inputs, then
/// gamma, beta and the weight) are a const generic, dispatched up to 32 (callers concatenate
/// groups beyond this).
pub const MAX_INPUTS: usize = 29;

/// A fused layer's backward step, for every parent count `N`.
pub trait LayerStep<B: Backend>: 'static {
    /// What the step keeps from the forward.
    type State: Clone + Send + Debug + 'static;
    /// The step with `N` parents.
    type Step<const N: usize>: Backward<B, N, State = Self::State>;
    /// The step with `N` parents.
    fn step<const N: usize>() -> Self::Step<N>;
}

/// A layer call's parents in the order its backward step registers their gradients: the
/// inputs, then gamma, beta and the weight.
pub fn layer_parents<B: Backend>(
    inputs: &[TrackedOf<B>],
    [gamma, beta, weight]: [&TrackedOf<B>; 3],
) -> Vec<NodeGuard> {
    assert!(
        (1..=MAX_INPUTS).contains(&inputs.len()),
        "a fused call takes 1 to {MAX_INPUTS} inputs"
    );
    inputs
        .iter()
        .chain([gamma, beta, weight])
        .map(|t| t.node())
        .collect()
}

/// [`register`]s `L`'s step with as many parents as [`layer_parents`] gave.
pub fn register_layer<B: Backend, L: LayerStep<B>>(
    parents: Vec<NodeGuard>,
    state: L::State,
    output: FloatTensor<B>,
    strategy: Strategy,
) -> TrackedOf<B> {
    fn run<B: Backend, L: LayerStep<B>, const N: usize>(
        parents: Vec<NodeGuard>,
        state: L::State,
        output: FloatTensor<B>,
        strategy: Strategy,
    ) -> TrackedOf<B> {
        let Ok(parents) = <[NodeGuard; N]>::try_from(parents) else {
            unreachable!("the parent count is N")
        };
        register(L::step::<N>(), parents, state, output, strategy)
    }
    macro_rules! arity {
        ($($n:literal)*) => {
            match parents.len() {
                $($n => run::<B, L, $n>(parents, state, output, strategy),)*
                n => unreachable!("{n} parents exceed the fused layer's maximum"),
            }
        };
    }
    arity!(4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32)
}
