"""Token choice on its own: greedy, temperature, top_k, top_p, min_tokens and seeds,
on small hand-made logits (no model)."""
import math

import torch

from llava_runtime import sampling
from llava_runtime.inputs import SamplingParams

EOS = torch.tensor([0])


def rows(*params, seeds=None):
    return sampling.RowParams.of(list(params), seeds or [7 * (i + 1) for i in range(len(params))], "cpu")


def test_greedy_takes_the_largest_logit_and_min_tokens_hides_eos():
    logits = torch.tensor([[5.0, 1.0, 2.0], [5.0, 1.0, 2.0]])
    greedy = SamplingParams(max_tokens=8, temperature=0, min_tokens=3)
    chosen = sampling.choose(logits.clone(), torch.tensor([0, 3]), rows(greedy, greedy), EOS)
    assert chosen.tolist() == [2, 0]  # row 0 has fewer than min_tokens: EOS (id 0) is out; row 1 may end


def test_a_seed_gives_the_same_tokens_whatever_rides_along():
    logits = torch.randn(1, 50, generator=torch.Generator().manual_seed(1))
    hot = SamplingParams(max_tokens=8, temperature=1.0, seed=1234)
    alone = [sampling.choose(logits.clone(), torch.tensor([step]), rows(hot, seeds=[1234]), EOS).item()
             for step in range(20)]
    others = SamplingParams(max_tokens=8, temperature=0.7)
    batch = torch.cat([torch.randn(2, 50), logits, torch.randn(1, 50)])
    together = [sampling.choose(batch.clone(), torch.tensor([step] * 4), rows(others, others, hot, others,
                                                                                seeds=[5, 6, 1234, 8]), EOS)[2].item()
                for step in range(20)]
    assert alone == together
    other_seed = [sampling.choose(logits.clone(), torch.tensor([step]), rows(hot, seeds=[99]), EOS).item()
                  for step in range(20)]
    assert other_seed != alone


def test_top_k_one_is_greedy_and_top_p_keeps_only_the_head():
    logits = torch.tensor([[0.0, 3.0, 2.9, 2.8, -5.0]])
    top1 = SamplingParams(max_tokens=8, temperature=1.5, top_k=1)
    assert {sampling.choose(logits.clone(), torch.tensor([s]), rows(top1), EOS).item() for s in range(50)} == {1}
    narrow = SamplingParams(max_tokens=8, temperature=1.0, top_p=0.5)
    seen = {sampling.choose(logits.clone(), torch.tensor([s]), rows(narrow), EOS).item() for s in range(200)}
    assert seen == {1, 2}  # p(1) ~ 0.36 < 0.5, so the second stays; the mass before the third is past 0.5


def test_sampled_frequencies_follow_the_softmax():
    logits = torch.tensor([[0.0, 1.0, 2.0, 0.5]])
    hot = SamplingParams(max_tokens=8, temperature=1.0)
    draws = 4000
    counts = torch.zeros(4)
    for seed in range(draws // 100):
        tokens = sampling.choose(logits.repeat(100, 1), torch.arange(100), rows(*[hot] * 100, seeds=[seed] * 100), EOS)
        counts += torch.bincount(tokens, minlength=4)
    expected = logits.softmax(-1)[0] * draws
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 16.3, (counts.tolist(), expected.tolist())  # p = 0.001 at 3 degrees of freedom


def test_gumbel_noise_is_well_formed():
    noise = sampling.gumbel(torch.tensor([3, -(2 ** 63)]), torch.tensor([0, 5]), torch.arange(10_000).repeat(2, 1))
    assert torch.isfinite(noise).all()
    assert abs(noise.mean().item() - 0.5772) < 0.05  # Euler-Mascheroni: the Gumbel mean
    assert not torch.equal(noise[0], noise[1])
    assert math.isclose(noise.std().item(), math.pi / math.sqrt(6), rel_tol=0.05)
