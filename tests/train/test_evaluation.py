"""evaluate and predict: eval-mode accuracy, loss and probabilities, test-time augmentation, and the
result's confusion matrix."""

import pytest
import torch

from cnnzoo.data import load_data, preprocess
from cnnzoo.models import build_model
from cnnzoo.train import EvalResult, evaluate, predict


def test_tta_averages_the_logits_of_each_image_and_its_mirror(data_root):
    data = load_data("fashion-mnist", root=data_root, limit_train=64, limit_test=300)
    torch.manual_seed(0)
    model = build_model("lenet_bn").eval()  # eval mode: no batch statistics, so batching cannot matter
    normalize = (data.info.mean, data.info.std)
    x = preprocess(data.test.images, normalize=normalize)
    with torch.inference_mode():
        logits = (model(x) + model(torch.flip(x, dims=(3,)))) / 2
    result = evaluate(model, data.test, normalize=normalize, batch_size=128, tta=True)
    assert torch.equal(result.predictions, logits.argmax(1))
    torch.testing.assert_close(result.confidences, logits.softmax(1).max(1).values)
    assert result.loss == pytest.approx(torch.nn.functional.cross_entropy(logits, data.test.labels).item(), rel=1e-5)
    plain = evaluate(model, data.test, normalize=normalize, batch_size=128)
    assert not torch.equal(plain.confidences, result.confidences)  # the mirror really took part


def test_evaluate_and_predict_agree_and_leave_the_mode_as_it_was(data_root):
    data = load_data("fashion-mnist", root=data_root, limit_train=64, limit_test=100)
    torch.manual_seed(0)
    model = build_model("lenet_bn").train()
    normalize = (data.info.mean, data.info.std)
    result = evaluate(model, data.test, normalize=normalize, batch_size=32)
    probabilities = predict(model, data.test.images, normalize=normalize)
    assert model.training  # both switch to eval mode and back
    assert probabilities.shape == (100, 10) and torch.allclose(probabilities.sum(1), torch.ones(100))
    assert torch.equal(probabilities.argmax(1), result.predictions)
    assert result.accuracy == pytest.approx((result.predictions == data.test.labels).double().mean().item())
    assert result.classes == tuple(data.test.classes)


def test_confusion_rows_are_true_classes_and_per_class_accuracy_reads_its_diagonal():
    result = EvalResult(loss=0.0, accuracy=0.5, predictions=torch.tensor([0, 1, 1, 2]),
                        confidences=torch.ones(4), labels=torch.tensor([0, 0, 1, 1]), classes=("a", "b", "c"))
    assert result.confusion().tolist() == [[1, 1, 0], [0, 1, 1], [0, 0, 0]]
    assert result.per_class_accuracy() == [0.5, 0.5, 0.0]  # a class with no images counts as 0, not NaN


def test_predict_resizes_as_the_run_did(data_root):
    # predict had no resize_mode, so a model trained on PIL-resized images was shown bilinear ones.
    from cnnzoo.data import InputSpec, load_split
    from cnnzoo.models import build_model
    from cnnzoo.train import predict

    images = load_split("fashion-mnist", "test", root=data_root).images[:4]
    torch.manual_seed(0)
    model = build_model("lenet5", input_size=32).eval()
    spec = InputSpec(32, 0.286, 0.353, "pil")
    with torch.inference_mode():
        expected = model(spec(images)).float().softmax(1)
    torch.testing.assert_close(predict(model, images, **spec.kwargs()), expected, rtol=0, atol=0)
