//! torc-runner
