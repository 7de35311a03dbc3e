"""A callback for the tests that interrupt a training run: it holds the run at epoch 2's first step
(epoch 1 is checkpointed), says so on stdout, and waits until the SIGINT has reached cnnzoo's own
handler. The test sends the interrupt on that line, so the stop lands in epoch 2 however fast the
machine trains: no test guesses how long an epoch takes."""

import signal
import threading

import cnnzoo

HOLDING = "HOLDING in epoch 2"


class HoldForInterrupt(cnnzoo.Callback):
    def on_step_end(self, state):
        if (state.epoch, state.step) != (1, 0):
            return
        cnnzoo_handler, arrived = signal.getsignal(signal.SIGINT), threading.Event()

        def handler(signum, frame):
            cnnzoo_handler(signum, frame)
            arrived.set()

        signal.signal(signal.SIGINT, handler)
        print(HOLDING, flush=True)
        try:
            if not arrived.wait(600):  # a guard against a hang only: the test interrupts at once
                raise RuntimeError("no interrupt arrived")
        finally:
            signal.signal(signal.SIGINT, cnnzoo_handler)
