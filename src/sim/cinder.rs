//! The emulated Cinder.

use axum::Router;

use super::world::World;

/// The Cinder router.
pub fn router(world: World) -> Router {
    Router::new().with_state(world)
}
