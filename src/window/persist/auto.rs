//! Auto-persist on a tokio runtime.

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::sync::Arc;
use crate::window::error::WindowError;
use crate::window::shards::Inner;

/// The periodic persist task; aborted when dropped.
pub(crate) struct AutoPersist(JoinHandle<()>);

impl AutoPersist {
    pub(crate) fn spawn(inner: &Arc<Inner>, interval: Duration) -> Result<Self, WindowError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| WindowError::NoRuntime)?;
        let weak = Arc::downgrade(inner);
        Ok(Self(handle.spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                if !inner.is_dirty() {
                    continue;
                }
                match tokio::task::spawn_blocking(move || inner.persist_batch(false)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::error!(
                            error = &e as &dyn std::error::Error,
                            "window: auto-persist failed; will retry"
                        )
                    }
                    Err(e) => tracing::error!(
                        error = &e as &dyn std::error::Error,
                        "window: auto-persist task failed"
                    ),
                }
            }
        })))
    }
}

impl Drop for AutoPersist {
    fn drop(&mut self) {
        self.0.abort();
    }
}
