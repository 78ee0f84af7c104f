//! Pool sizing, queueing and maintenance settings, with documented defaults.

use std::time::Duration;

/// Default smallest pool size.
pub const DEFAULT_MIN_SIZE: usize = 1;
/// Default largest pool size.
pub const DEFAULT_MAX_SIZE: usize = 8;
/// Default bound on checkouts waiting for a worker.
pub const DEFAULT_MAX_WAITERS: usize = 256;
/// Default queue depth at which the pool adds a worker.
pub const DEFAULT_SCALE_UP_QUEUE_DEPTH: usize = 1;
/// Default wait of the oldest waiter at which the pool adds a worker.
pub const DEFAULT_SCALE_UP_WAIT: Duration = Duration::from_millis(50);
/// Default idle time after which a worker above the minimum is removed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default interval between health checks of idle workers.
pub const DEFAULT_HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// Default interval of the maintenance loop (scale-up on wait, scale-down, minimum size).
pub const DEFAULT_MAINTENANCE_INTERVAL: Duration = Duration::from_millis(100);

/// How a pool sizes itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Name, for errors, logs and the `pool` label of metrics.
    pub name: String,
    /// Workers kept even when idle (created at start). Default [`DEFAULT_MIN_SIZE`].
    pub min_size: usize,
    /// Most workers at once, at least 1 and at least `min_size`. Default [`DEFAULT_MAX_SIZE`].
    pub max_size: usize,
    /// Checkouts that may wait at once; beyond it the lowest-priority waiter is shed for a
    /// higher-priority arrival, or the arrival is refused as overloaded. Default
    /// [`DEFAULT_MAX_WAITERS`].
    pub max_waiters: usize,
    /// When this many checkouts wait, a worker is added (up to `max_size`). Default
    /// [`DEFAULT_SCALE_UP_QUEUE_DEPTH`] (1): grow as soon as anyone waits. Raise it when workers
    /// are expensive to create and short waits are acceptable.
    pub scale_up_queue_depth: usize,
    /// When the oldest waiter has waited this long, a worker is added whatever the depth.
    /// Default [`DEFAULT_SCALE_UP_WAIT`].
    pub scale_up_wait: Duration,
    /// A worker idle this long is removed while the pool is above `min_size`. Default
    /// [`DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// Idle workers are health-checked this often; unhealthy ones are replaced. Default
    /// [`DEFAULT_HEALTH_CHECK_INTERVAL`].
    pub health_check_interval: Duration,
    /// How often the maintenance loop runs. Default [`DEFAULT_MAINTENANCE_INTERVAL`]: scale-up on
    /// wait and scale-down happen within 100 ms of being due.
    pub maintenance_interval: Duration,
}

impl PoolConfig {
    /// Defaults, with this name.
    pub fn new(name: impl Into<String>) -> Self {
        PoolConfig {
            name: name.into(),
            min_size: DEFAULT_MIN_SIZE,
            max_size: DEFAULT_MAX_SIZE,
            max_waiters: DEFAULT_MAX_WAITERS,
            scale_up_queue_depth: DEFAULT_SCALE_UP_QUEUE_DEPTH,
            scale_up_wait: DEFAULT_SCALE_UP_WAIT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            health_check_interval: DEFAULT_HEALTH_CHECK_INTERVAL,
            maintenance_interval: DEFAULT_MAINTENANCE_INTERVAL,
        }
    }

    /// Sets minimum and maximum size.
    pub fn size(mut self, min: usize, max: usize) -> Self {
        self.min_size = min;
        self.max_size = max;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.max_size == 0 {
            return Err("max_size must be at least 1".into());
        }
        if self.min_size > self.max_size {
            return Err(format!("min_size {} is larger than max_size {}", self.min_size, self.max_size));
        }
        if self.scale_up_queue_depth == 0 {
            return Err("scale_up_queue_depth must be at least 1".into());
        }
        if self.maintenance_interval.is_zero() || self.health_check_interval.is_zero() {
            return Err("maintenance and health-check intervals must be greater than zero".into());
        }
        Ok(())
    }
}
