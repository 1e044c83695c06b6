"""Suite-wide test settings."""

import torch

# One intra-op thread: the suite's models are tiny, and on a 2-core machine thread hand-offs cost
# them far more than the parallelism gives (measured up to ~100x slower under load). Tests that need
# threads or processes (DDP, kill-and-resume) start their own subprocesses.
torch.set_num_threads(1)
