//! The per-workflow scheduler. (Being written.)
