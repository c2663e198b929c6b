//! Data sets from local files (embedded digits, Fashion-MNIST, CIFAR-10/100), seeded splits and augmentation.
