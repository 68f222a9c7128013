"""Entry point: `python train.py [key=value ...]`, or `python train.py -m slope=0,0.01,0.2`."""

import hydra
from omegaconf import DictConfig

from slopestudy.config import register
from slopestudy.run.job import run_job

register()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    return run_job(cfg)


if __name__ == "__main__":
    main()
