#!/usr/bin/env python3
"""The PyTorch MNIST example, run on the 8x8 digits: a stand-in for a third-party script.

It knows nothing about kappa. Its metrics are the lines it prints, exactly as upstream prints
them, and (with --logdir) a TensorBoard event file, written the way people usually write one.
kappa reads them from outside: the lines with a regex, or the event files.

Where it comes from: the training loop of mnist/main.py in github.com/pytorch/examples
(Copyright (c) 2017, PyTorch contributors, BSD 3-Clause License). Net, train(), test(), the
flags, Adadelta + StepLR and the print formats follow that file. What changed:
  * Data: instead of torchvision's MNIST, the 8x8 digits kappa ships (crates/train/data/digits.csv:
    64 pixels 0..16, then the label; UCI "Optical Recognition of Handwritten Digits", CC BY 4.0),
    pixels / 16 as N x 1 x 8 x 8, split once with a fixed seed (not --seed): 80% train, 20% test.
    No torchvision needed.
  * Input size: two 3x3 convs take 8x8 to 4x4 and max-pooling to 2x2, so fc1 takes 64*2*2 = 256
    inputs instead of 9216. The layers are otherwise upstream's.
  * --logdir DIR (new): also log to TensorBoard: train/loss at every log line, test/loss and
    test/accuracy (a fraction) after each epoch. Without it nothing changes.
  * Smaller defaults (--epochs 6) so that a run takes a few seconds on a CPU; the train loader
    shuffles on the CPU too, and there is no loader worker process (the data is in memory).

    python3 sweeps/mnist-style/train.py --lr 1.0 [--logdir runs/lr1]
"""
import argparse
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torch.optim.lr_scheduler import StepLR

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "crates", "train", "data", "digits.csv")


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(256, 128)  # upstream: 9216 (28x28 inputs)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.conv1(x)
        x = F.relu(x)
        x = self.conv2(x)
        x = F.relu(x)
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = self.fc1(x)
        x = F.relu(x)
        x = self.dropout2(x)
        x = self.fc2(x)
        output = F.log_softmax(x, dim=1)
        return output


def train(args, model, device, train_loader, optimizer, epoch, writer=None):
    model.train()
    for batch_idx, (data, target) in enumerate(train_loader):
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        output = model(data)
        loss = F.nll_loss(output, target)
        loss.backward()
        optimizer.step()
        if batch_idx % args.log_interval == 0:
            print('Train Epoch: {} [{}/{} ({:.0f}%)]\tLoss: {:.6f}'.format(
                epoch, batch_idx * len(data), len(train_loader.dataset),
                100. * batch_idx / len(train_loader), loss.item()))
            if writer is not None:  # added: global step = batches before this one in the run
                writer.add_scalar('train/loss', loss.item(), (epoch - 1) * len(train_loader) + batch_idx)
            if args.dry_run:
                break


def test(model, device, test_loader):
    model.eval()
    test_loss = 0
    correct = 0
    with torch.no_grad():
        for data, target in test_loader:
            data, target = data.to(device), target.to(device)
            output = model(data)
            test_loss += F.nll_loss(output, target, reduction='sum').item()  # sum up batch loss
            pred = output.argmax(dim=1, keepdim=True)  # get the index of the max log-probability
            correct += pred.eq(target.view_as(pred)).sum().item()

    test_loss /= len(test_loader.dataset)

    print('\nTest set: Average loss: {:.4f}, Accuracy: {}/{} ({:.0f}%)\n'.format(
        test_loss, correct, len(test_loader.dataset),
        100. * correct / len(test_loader.dataset)))
    return test_loss, correct / len(test_loader.dataset)  # added, for --logdir


def load_digits(path):
    """The digits as two TensorDatasets (train, test); replaces datasets.MNIST."""
    rows = [[float(v) for v in line.split(',')] for line in open(path) if line.strip()]
    data = torch.tensor(rows)
    x = (data[:, :64] / 16.0).reshape(-1, 1, 8, 8)
    y = data[:, 64].long()
    split = torch.randperm(len(y), generator=torch.Generator().manual_seed(1234))
    n_test = len(y) // 5
    test_idx, train_idx = split[:n_test], split[n_test:]
    return (torch.utils.data.TensorDataset(x[train_idx], y[train_idx]),
            torch.utils.data.TensorDataset(x[test_idx], y[test_idx]))


def main():
    # Training settings
    parser = argparse.ArgumentParser(description='PyTorch MNIST Example (8x8 digits)')
    parser.add_argument('--batch-size', type=int, default=64, metavar='N',
                        help='input batch size for training (default: 64)')
    parser.add_argument('--test-batch-size', type=int, default=1000, metavar='N',
                        help='input batch size for testing (default: 1000)')
    parser.add_argument('--epochs', type=int, default=6, metavar='N',
                        help='number of epochs to train (default: 6)')
    parser.add_argument('--lr', type=float, default=1.0, metavar='LR',
                        help='learning rate (default: 1.0)')
    parser.add_argument('--gamma', type=float, default=0.7, metavar='M',
                        help='Learning rate step gamma (default: 0.7)')
    parser.add_argument('--no-accel', action='store_true',
                        help='disables accelerator')
    parser.add_argument('--dry-run', action='store_true',
                        help='quickly check a single pass')
    parser.add_argument('--seed', type=int, default=1, metavar='S',
                        help='random seed (default: 1)')
    parser.add_argument('--log-interval', type=int, default=10, metavar='N',
                        help='how many batches to wait before logging training status')
    parser.add_argument('--save-model', action='store_true',
                        help='For Saving the current Model')
    parser.add_argument('--logdir', default=None, metavar='DIR',
                        help='also write TensorBoard event files to DIR (added)')
    args = parser.parse_args()

    use_accel = not args.no_accel and torch.accelerator.is_available()

    torch.manual_seed(args.seed)

    if use_accel:
        device = torch.accelerator.current_accelerator()
    else:
        device = torch.device("cpu")

    train_kwargs = {'batch_size': args.batch_size, 'shuffle': True}
    test_kwargs = {'batch_size': args.test_batch_size}
    if use_accel:
        train_kwargs['pin_memory'] = True
        test_kwargs['pin_memory'] = True

    dataset1, dataset2 = load_digits(DATA)
    train_loader = torch.utils.data.DataLoader(dataset1, **train_kwargs)
    test_loader = torch.utils.data.DataLoader(dataset2, **test_kwargs)

    writer = None
    if args.logdir:  # imported only here: it needs the tensorboard package
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(args.logdir)

    model = Net().to(device)
    optimizer = optim.Adadelta(model.parameters(), lr=args.lr)

    scheduler = StepLR(optimizer, step_size=1, gamma=args.gamma)
    for epoch in range(1, args.epochs + 1):
        train(args, model, device, train_loader, optimizer, epoch, writer)
        test_loss, accuracy = test(model, device, test_loader)
        if writer is not None:
            step = epoch * len(train_loader)  # batches done by the end of this epoch
            writer.add_scalar('test/loss', test_loss, step)
            writer.add_scalar('test/accuracy', accuracy, step)
        scheduler.step()

    if writer is not None:
        writer.close()

    if args.save_model:
        torch.save(model.state_dict(), "mnist_cnn.pt")


if __name__ == '__main__':
    main()
