//! Routes as the tests write them.

use ceryx::route::{Route, Settings};
use ceryx::store::RouteStore;

/// Writes a route as the CeryxRoute `owner` (`<namespace>/<name>`) would.
pub async fn owned(store: &dyn RouteStore, source: &str, target: &str, owner: &str) {
    let by = ceryx::store::Writer::Resource {
        owner,
        take_unowned: false,
    };
    store.write(&route(source, target), by).await.unwrap();
}

pub fn route(source: &str, target: &str) -> Route {
    Route::new(source, target, Settings::default()).unwrap()
}
