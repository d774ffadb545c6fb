// Filled by the work in progress on this capability; no test cases yet.
