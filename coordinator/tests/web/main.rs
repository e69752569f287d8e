//! Dashboard tests: the JSON API over real HTTP and the pages in real headless Chromium
//! (over WebDriver), against a real coordinator on a fresh database with runs trained
//! (simulated) through the gRPC worker API.

mod api;
mod browser;
mod stack;
