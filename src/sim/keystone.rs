//! The emulated Keystone.

use axum::Router;

use super::world::World;

/// The Keystone router.
pub fn router(world: World) -> Router {
    Router::new().with_state(world)
}
