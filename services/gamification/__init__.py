"""Gamification: challenges and badges, driven by the same units of work as the ledger.

* `progress`: a member's count of a metric (purchases, amount spent, reviews, referrals,
  shares, points earned) inside a window, from the ledger, purchases and members tables, so
  refunds lower purchase-based progress and nothing is counted twice.
* `badges`: creating badges, awarding one (once per member: a unique constraint), and the
  automatic awards when a lifetime count reaches a badge's threshold.
* `challenges`: creating challenges, their current period (recurring ones restart each week
  or month), and `after_change`: called inside every unit of work that moved a member's
  metrics, under the member's row lock, it completes what is reached, pays the CHALLENGE
  entry and awards the badge exactly once, with member events for live updates.
"""
