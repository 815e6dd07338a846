"""Training code that runs inside the Hugging Face PyTorch training DLC (and on a laptop CPU).

Entry point: `train.py` (run as a script by SageMaker, or under `torchrun`). Its modules import each other as
`training_code.<module>`: the tests import them as a package from the repository root, and `train.py` registers its
own folder as the package `training_code` when run as a script (where only this folder's contents exist), so the
same imports work in both places. No module here is named after a standard-library module (hence `hf_token`, not
`secrets`): the script's folder would otherwise shadow it.
"""
