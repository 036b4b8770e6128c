-- 018: a seed for the shuffle knob, so a test that shuffles deliveries replays its order.
--
-- With a seed, each batch's order is drawn from the seed and the batch's first shuffled delivery
-- (SplitMix64, `SeededGenerator`): the same events dispatched from a fresh sandbox go out in the
-- same order again. Without one (NULL), the order is drawn at random as before.
ALTER TABLE sb_webhook_knobs ADD COLUMN shuffle_seed bigint;
