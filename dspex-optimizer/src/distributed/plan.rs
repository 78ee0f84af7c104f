//! A run's plan, made from its spec alone: what it builds, the candidates it scores, how tasks
//! are numbered, and the rounds of its evaluation. Every scheduler (the first, or one after a
//! failover replaying the log) makes the same plan and so numbers tasks alike and takes the same
//! decisions from the same recorded scores.
//!
//! **Builds and candidates per optimizer.** A random search builds DSPy's candidates (seeds -3
//! to `num_candidate_programs - 1`) and scores each; a labelled or bootstrapped few-shot run
//! builds one program (build seed 0) and scores it; an instruction search builds the
//! demonstration sets its trials use and scores each trial: its set with its instruction.
//!
//! **Task ids.** Build `i` is task `i`; batch `b` of candidate `p` (in the optimizer's order) is
//! task `builds + p × batches + b`. Batch `b` holds validation examples `b × batch_size ..` of
//! the evaluation order: the validation set's own order for a full evaluation, a shuffle seeded
//! by the run's seed for halving (so a prefix is a random sample).
//!
//! **Successive halving.** Round `r` scores every candidate still in on the first `n_r`
//! examples of the order: `n_0` is `first_examples` (whole batches), and each round doubles it up
//! to the whole set. Once every candidate in has its round scored, those that cannot win are
//! stopped: with `m_c` a candidate's mean on the `n` examples of the round, `N` the validation
//! set and `C` candidates over `R` rounds with a decision,
//!
//! ```text
//! ε(n) = sqrt( (1 − (n − 1)/N) · ln(2·C·R/δ) / (2n) )      δ = 1 − confidence
//! stop c  when  m_c + ε(n) < max_d (m_d − ε(n))
//! ```
//!
//! (Hoeffding's bound for sampling without replacement, Serfling's factor `1 − (n−1)/N`, with
//! a union bound over every candidate and round.) For scores in `[0, 1]` (every built-in metric;
//! a custom metric outside it makes the bound wrong, not the run) the candidate best on the
//! whole validation set is stopped with probability at most `δ` over the shuffle; ties may go
//! either way. The last round scores the candidates left on every example, and the best of them
//! is the result, its mean summed in validation order as a full evaluation sums it.
//!
//! **Cost.** Rounds are barriers: a candidate's next round waits for the slowest candidate's
//! round (and for every build). With few candidates left, fewer tasks are ready at once.

use std::collections::BTreeMap;
use std::ops::Range;

use super::spec::{EvaluationPlan, Optimizer, RunSpec, Task, TaskKind};
use crate::optimizers::InstructionSearch;
use crate::program::Program;
use crate::rng::Rng;

/// One candidate a run scores.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// Its key in results and statuses: DSPy's seed for a random search (-3 zero-shot, -2
    /// labelled only, -1 bootstrapped in order, 0… shuffled), 0 for a few-shot optimizer's one
    /// program, the trial's number (from 0, in the order tried) for an instruction search.
    pub key: i64,
    /// The index of its build in [`Plan::builds`].
    pub build: usize,
    /// The instruction set on every predictor of its build (an instruction search's trial).
    pub instruction: Option<String>,
}

/// Where a task id points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskAt {
    /// Build `index` of [`Plan::builds`].
    Build(usize),
    /// Batch `batch` of candidate `position` of [`Plan::candidates`].
    Eval {
        /// The candidate's position.
        position: usize,
        /// The batch.
        batch: usize,
    },
}

/// A run's builds, candidates, task ids and evaluation rounds (see the [module](self)).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    builds: Vec<i64>,
    candidates: Vec<Planned>,
    by_key: BTreeMap<i64, usize>,
    by_build: Vec<Vec<usize>>,
    batch_size: usize,
    /// Validation indices in the order batches take them.
    order: Vec<usize>,
    /// Batches scored by the end of each round (the last: every batch).
    rounds: Vec<usize>,
    /// ln(2·C·R/δ) (0 for a full evaluation: nothing is stopped).
    log_term: f64,
    /// Halving's confidence (0 for a full evaluation): what the digest takes, not `log_term`,
    /// whose last bit may differ between platforms' `ln`.
    confidence: f64,
}

/// The seed of halving's shuffle of the validation set, from the run's.
const ORDER_SEED: u64 = 0x4a17_1e5d_0bde_c0de;

impl Plan {
    /// The plan of `spec` (any spec; [`RunSpec::check`] bounds its size).
    pub fn new(spec: &RunSpec) -> Plan {
        let mut builds = Vec::new();
        let mut candidates = Vec::new();
        match &spec.optimizer {
            Optimizer::RandomSearch => {
                for (i, seed) in spec.search().seeds().enumerate() {
                    builds.push(seed);
                    candidates.push(Planned { key: seed, build: i, instruction: None });
                }
            }
            Optimizer::LabeledFewShot | Optimizer::BootstrapFewShot => {
                builds.push(0);
                candidates.push(Planned { key: 0, build: 0, instruction: None });
            }
            Optimizer::InstructionSearch { .. } => {
                let search = spec.instruction_search().unwrap_or_default();
                let (instructions, trials) = search.trials(&spec.student, &spec.trainset, spec.seed);
                let mut used: Vec<i64> = trials.iter().map(|(_, d)| *d).collect();
                used.sort_unstable();
                used.dedup();
                builds = used;
                for (t, (i, d)) in trials.into_iter().enumerate() {
                    let build = builds.binary_search(&d).unwrap_or_else(|_| unreachable!("a used set"));
                    candidates.push(Planned {
                        key: t as i64,
                        build,
                        instruction: Some(instructions[i].clone()),
                    });
                }
            }
        }
        let by_key = candidates.iter().enumerate().map(|(p, c)| (c.key, p)).collect();
        let mut by_build = vec![Vec::new(); builds.len()];
        for (p, c) in candidates.iter().enumerate() {
            by_build[c.build].push(p);
        }
        let n = spec.valset.len();
        let batch_size = spec.batch_size.max(1);
        let batches = n.div_ceil(batch_size);
        let mut order: Vec<usize> = (0..n).collect();
        let (rounds, log_term, confidence) = match &spec.evaluation {
            EvaluationPlan::Full => (vec![batches], 0.0, 0.0),
            EvaluationPlan::Halving { first_examples, confidence } => {
                Rng::new(spec.seed ^ ORDER_SEED).shuffle(&mut order);
                let mut rounds = Vec::new();
                let mut b = first_examples.div_ceil(batch_size).clamp(1, batches.max(1));
                loop {
                    rounds.push(b.min(batches));
                    if b >= batches {
                        break;
                    }
                    b = (b * 2).min(batches);
                }
                let decisions = (rounds.len() - 1).max(1) as f64;
                let delta = (1.0 - confidence).clamp(f64::MIN_POSITIVE, 1.0);
                (rounds, (2.0 * candidates.len().max(1) as f64 * decisions / delta).ln(), *confidence)
            }
        };
        Plan { builds, candidates, by_key, by_build, batch_size, order, rounds, log_term, confidence }
    }

    /// The build seeds, in task-id order.
    pub fn builds(&self) -> &[i64] {
        &self.builds
    }

    /// The candidates scored, in the optimizer's order (the first of equal best wins).
    pub fn candidates(&self) -> &[Planned] {
        &self.candidates
    }

    /// The position of the candidate with `key`.
    pub fn position(&self, key: i64) -> Option<usize> {
        self.by_key.get(&key).copied()
    }

    /// The positions of the candidates made from build `index`.
    pub fn candidates_of(&self, build: usize) -> &[usize] {
        self.by_build.get(build).map_or(&[], Vec::as_slice)
    }

    /// Batches of the whole validation set.
    pub fn batches(&self) -> usize {
        self.rounds.last().copied().unwrap_or(0)
    }

    /// Batches scored by the end of each round (one round for a full evaluation).
    pub fn rounds(&self) -> &[usize] {
        &self.rounds
    }

    /// Validation examples scored by the end of round `round`.
    pub fn examples_by(&self, round: usize) -> usize {
        let batches = self.rounds.get(round).copied().unwrap_or_else(|| self.batches());
        (batches * self.batch_size).min(self.order.len())
    }

    /// Validation examples in all.
    pub fn examples(&self) -> usize {
        self.order.len()
    }

    /// The validation indices of batch `batch`, in evaluation order.
    pub fn batch(&self, batch: usize) -> &[usize] {
        let start = (batch * self.batch_size).min(self.order.len());
        let end = ((batch + 1) * self.batch_size).min(self.order.len());
        &self.order[start..end]
    }

    /// The first `n` validation indices of the evaluation order (a round's examples).
    pub fn first(&self, n: usize) -> &[usize] {
        &self.order[..n.min(self.order.len())]
    }

    /// Tasks if no candidate is stopped: every build, every candidate on every batch.
    pub fn max_tasks(&self) -> usize {
        self.builds.len().saturating_add(self.candidates.len().saturating_mul(self.batches()))
    }

    /// The ids of batches `batches` of the candidate at `position`.
    pub fn eval_ids(&self, position: usize, batches: Range<usize>) -> Range<u64> {
        let base = (self.builds.len() + position * self.batches()) as u64;
        base + batches.start as u64..base + batches.end as u64
    }

    /// Where task `id` points (`None`: not a task of this run).
    pub fn locate(&self, id: u64) -> Option<TaskAt> {
        let id = usize::try_from(id).ok()?;
        if id < self.builds.len() {
            return Some(TaskAt::Build(id));
        }
        let rest = id - self.builds.len();
        let batches = self.batches().max(1);
        let position = rest / batches;
        (position < self.candidates.len()).then_some(TaskAt::Eval { position, batch: rest % batches })
    }

    /// The candidate at `position` made from its build's program.
    pub fn program_of(&self, position: usize, built: &Program) -> Program {
        match self.candidates.get(position).and_then(|c| c.instruction.as_deref()) {
            Some(instruction) => InstructionSearch::with_instruction(built, instruction),
            None => built.clone(),
        }
    }

    /// Task `id` made whole, `built` giving the programs built so far by build seed (`None`: not
    /// a task of this run, or an evaluation whose build is not done). What a scheduler's queue
    /// holds is ids: 8 bytes a task, not a program's copy.
    pub fn task<'a>(&self, id: u64, built: impl Fn(i64) -> Option<&'a Program>) -> Option<Task> {
        match self.locate(id)? {
            TaskAt::Build(i) => Some(Task { id, kind: TaskKind::Build { seed: self.builds[i] } }),
            TaskAt::Eval { position, batch } => {
                let candidate = &self.candidates[position];
                let program = self.program_of(position, built(self.builds[candidate.build])?);
                Some(Task {
                    id,
                    kind: TaskKind::Eval {
                        candidate: candidate.key,
                        program,
                        examples: self.batch(batch).to_vec(),
                    },
                })
            }
        }
    }

    /// A digest of the plan (builds, candidates with their instructions, evaluation order,
    /// rounds, margin): equal in every version that numbers the run's tasks alike.
    pub fn digest(&self) -> u64 {
        let mut bytes = Vec::new();
        let mut put = |v: u64| bytes.extend_from_slice(&v.to_le_bytes());
        put(self.builds.len() as u64);
        for b in &self.builds {
            put(*b as u64);
        }
        put(self.candidates.len() as u64);
        for c in &self.candidates {
            put(c.key as u64);
            put(c.build as u64);
            put(foundation_core::hash::stable_hash(c.instruction.as_deref().unwrap_or("\0").as_bytes()));
        }
        put(self.batch_size as u64);
        for i in &self.order {
            put(*i as u64);
        }
        for r in &self.rounds {
            put(*r as u64);
        }
        put(self.confidence.to_bits());
        foundation_core::hash::stable_hash(&bytes)
    }

    /// Halving's margin after `n` examples: `ε(n)` of the [module](self) (0 on the whole set or
    /// for a full evaluation).
    pub fn margin(&self, n: usize) -> f64 {
        let total = self.order.len();
        if self.log_term == 0.0 || n == 0 || n >= total {
            return 0.0;
        }
        let serfling = 1.0 - (n as f64 - 1.0) / total as f64;
        (serfling * self.log_term / (2.0 * n as f64)).sqrt()
    }

    /// Of candidates with these means on the first `n` examples, which go on (the rule of the
    /// [module](self)).
    pub fn survivors(&self, means: &[f64], n: usize) -> Vec<bool> {
        if self.log_term == 0.0 || n >= self.order.len() {
            return vec![true; means.len()];
        }
        let margin = self.margin(n);
        let best_low = means.iter().map(|m| m - margin).fold(f64::NEG_INFINITY, f64::max);
        means.iter().map(|m| m + margin >= best_low).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_are_made_from_the_spec_alone() {
        let spec = RunSpec::questions("ok", 1, 8);
        let plan = spec.plan();
        assert_eq!((plan.builds().len(), plan.candidates().len(), plan.batches()), (11, 11, 20));
        assert_eq!(plan.max_tasks(), 11 * 21);
        let program = Program::new("p");
        for (p, c) in plan.candidates().iter().enumerate() {
            assert_eq!(c.key, p as i64 - 3);
            assert_eq!(plan.task(p as u64, |_| None).unwrap().kind, TaskKind::Build { seed: c.key });
            for id in plan.eval_ids(p, 0..plan.batches()) {
                let TaskAt::Eval { position, batch } = plan.locate(id).unwrap() else { panic!("{id}") };
                assert_eq!(position, p);
                let task = plan.task(id, |_| Some(&program)).unwrap();
                assert_eq!(
                    task.kind,
                    TaskKind::Eval {
                        candidate: c.key,
                        program: program.clone(),
                        examples: (batch * 5..batch * 5 + 5).collect()
                    }
                );
                assert_eq!(plan.task(id, |_| None), None, "no program, no evaluation");
            }
        }
        assert_eq!(plan.locate(plan.max_tasks() as u64), None);
    }

    #[test]
    fn each_optimizer_plans_its_builds_and_candidates() {
        let mut spec = RunSpec::questions("ok", 3, 2);
        spec.optimizer = Optimizer::LabeledFewShot;
        let plan = spec.plan();
        assert_eq!((plan.builds(), plan.candidates().len()), (&[0][..], 1));
        spec.optimizer = Optimizer::InstructionSearch { num_instructions: 3, num_trials: 6 };
        let plan = spec.plan();
        assert_eq!(plan.candidates().len(), 6);
        let search = spec.instruction_search().unwrap();
        let (instructions, trials) = search.trials(&spec.student, &spec.trainset, spec.seed);
        let built = Program::new("set");
        for (t, (i, d)) in trials.iter().enumerate() {
            let c = &plan.candidates()[t];
            assert_eq!((c.key, plan.builds()[c.build]), (t as i64, *d));
            assert!(plan.candidates_of(c.build).contains(&t));
            let made = plan.program_of(t, &built);
            assert_eq!(made, InstructionSearch::with_instruction(&built, &instructions[*i]));
        }
        // Only the sets a trial uses are built, each once.
        let mut used: Vec<i64> = trials.iter().map(|(_, d)| *d).collect();
        used.sort_unstable();
        used.dedup();
        assert_eq!(plan.builds(), &used[..]);
    }

    #[test]
    fn halving_doubles_a_shuffled_prefix_and_stops_only_clear_losers() {
        let mut spec = RunSpec::questions("h", 5, 8);
        spec.evaluation = EvaluationPlan::Halving { first_examples: 12, confidence: 0.95 };
        let plan = spec.plan();
        // 12 examples are 3 batches of 5; then 6, 12, 20 of the 20 batches.
        assert_eq!(plan.rounds(), &[3, 6, 12, 20]);
        assert_eq!((plan.examples_by(0), plan.examples_by(3)), (15, 100));
        let mut seen: Vec<usize> = (0..plan.batches()).flat_map(|b| plan.batch(b).to_vec()).collect();
        assert_ne!(seen, (0..100).collect::<Vec<_>>(), "a shuffled order");
        seen.sort_unstable();
        assert_eq!(seen, (0..100).collect::<Vec<_>>(), "every example once");
        assert_eq!(plan.margin(100), 0.0);
        assert!(plan.margin(15) > plan.margin(30) && plan.margin(30) > plan.margin(60));
        // ln(2 · 11 · 3 / 0.05) = 7.19…; at 60 of 100: sqrt(0.41 · 7.19 / 120) = 0.157.
        assert!((plan.margin(60) - 0.1567).abs() < 1e-3, "{}", plan.margin(60));
        assert_eq!(plan.survivors(&[0.9, 0.6, 0.58, 0.3], 60), vec![true, true, false, false]);
        // Early on, nothing is clear.
        assert_eq!(plan.survivors(&[1.0, 0.2], 15), vec![true, true]);
        // A full evaluation stops nothing.
        assert_eq!(RunSpec::questions("f", 5, 8).plan().survivors(&[1.0, 0.0], 50), vec![true, true]);
    }
}
