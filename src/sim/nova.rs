//! The emulated Nova.

use axum::Router;

use super::world::World;

/// The Nova router.
pub fn router(world: World) -> Router {
    Router::new().with_state(world)
}
